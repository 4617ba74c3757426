"""What a compression policy is, and the selection step most policies share.

After each chunk, if a layer's memory holds more than the budget ``B`` tokens, the session asks the
policy which ``B`` rows of each layer to keep. Text tokens (the prompt prefix) are always kept
(DESIGN.md §2), so every policy chooses only among the stream's visual and audio tokens. (On a plain
text decoder's cache nothing is protected: see :mod:`omnimem_ref.policies.text`.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from omnimem_ref.streaming.memory import KVMemory


# A transformers decoder stack (Qwen2Model, LlamaModel): ``.layers[l].self_attn``,
# ``.layers[l].input_layernorm``, ``.rotary_emb``, ``.config``, ``.get_input_embeddings()``.
Backbone = Any


@dataclass
class ChunkContext:
    """What the session knows about the chunk it has just written to memory.

    ``hidden_states[l]`` is the input of layer ``l`` for the chunk's tokens, shape
    ``(1, chunk, hidden)``: policies that need queries (SnapKV-style windows, perturbation
    scores) project them with the layer's own ``q_proj``.

    ``model`` is a TinyOmni (whose ``.backbone`` is the decoder) or a plain transformers
    ``*ForCausalLM`` (whose ``.model`` is). ``prompt_ids``: token ids, in that model's vocabulary,
    of the generic prompt that prompt-based policies (StreamMem, OmniMem's ``prompt`` proxy) run
    as queries; ``None`` lets each build its default from TinyOmni's vocabulary.
    """

    model: nn.Module
    hidden_states: tuple[torch.Tensor, ...]
    positions: torch.Tensor  # (chunk,) RoPE positions of the chunk's tokens
    prompt_ids: torch.Tensor | None = None

    @property
    def backbone(self) -> Backbone:
        """The decoder stack that owns the cache: TinyOmni's ``.backbone``, a CausalLM's ``.model``."""
        backbone = getattr(self.model, "backbone", None)
        return backbone if backbone is not None else self.model.model

    def next_position(self) -> int:
        """The position a token appended right after this chunk would get."""
        return int(self.positions[-1]) + 1


class CompressionPolicy(ABC):
    """Chooses, per layer, which cached tokens survive."""

    name: ClassVar[str]
    needs_hidden_states: ClassVar[bool] = False
    # Tokens at the start of a plain text decoder's cache this policy keeps as attention sinks
    # (the TinyOmni stream's prompt prefix is always kept anyway).
    text_sinks: ClassVar[int] = 0

    @abstractmethod
    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        """(layers, budget) indices of the rows to keep, ascending in each layer."""


def keep_top(scores: torch.Tensor, budget: int, memory: KVMemory) -> torch.Tensor:
    """Keep the ``budget`` highest-scoring rows of each layer, text tokens first.

    ``scores`` is (layers, tokens); ties and order do not matter, the result is sorted so the
    cache keeps its stream order.
    """
    scores = scores.float().masked_fill(memory.must_keep(), float("inf"))
    kept = scores.topk(budget, dim=1).indices
    return kept.sort(dim=1).values


def free_slots(memory: KVMemory, budget: int) -> torch.Tensor:
    """(layers,) slots left for evictable tokens once the protected ones are kept."""
    return budget - memory.must_keep().sum(dim=1)
