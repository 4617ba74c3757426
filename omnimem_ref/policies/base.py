"""What a compression policy is, and the selection step most policies share.

After each chunk, if a layer's memory holds more than the budget ``B`` tokens, the session asks the
policy which ``B`` rows of each layer to keep. Text tokens (the prompt prefix) are always kept
(DESIGN.md §2), so every policy chooses only among the stream's visual and audio tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from omnimem_ref.model.modeling import TEXT

if TYPE_CHECKING:
    from omnimem_ref.model.modeling import TinyOmniModel
    from omnimem_ref.streaming.memory import KVMemory


@dataclass
class ChunkContext:
    """What the session knows about the chunk it has just written to memory.

    ``hidden_states[l]`` is the input of layer ``l`` for the chunk's tokens, shape
    ``(1, chunk, hidden)``: policies that need queries (SnapKV-style windows, perturbation
    scores) project them with the layer's own ``q_proj``.
    """

    model: TinyOmniModel
    hidden_states: tuple[torch.Tensor, ...]
    positions: torch.Tensor  # (chunk,) RoPE positions of the chunk's tokens


class CompressionPolicy(ABC):
    """Chooses, per layer, which cached tokens survive."""

    name: ClassVar[str]
    needs_hidden_states: ClassVar[bool] = False

    @abstractmethod
    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        """(layers, budget) indices of the rows to keep, ascending in each layer."""


def keep_top(scores: torch.Tensor, budget: int, memory: KVMemory) -> torch.Tensor:
    """Keep the ``budget`` highest-scoring rows of each layer, text tokens first.

    ``scores`` is (layers, tokens); ties and order do not matter, the result is sorted so the
    cache keeps its stream order.
    """
    assert memory.meta is not None
    scores = scores.float().masked_fill(memory.meta.modality == TEXT, float("inf"))
    kept = scores.topk(budget, dim=1).indices
    return kept.sort(dim=1).values
