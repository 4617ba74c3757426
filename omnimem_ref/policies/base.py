"""What a compression policy is, and the selection step most policies share.

After each chunk, if a layer's memory holds more than the budget ``B`` tokens, the session asks the
policy which ``B`` rows of each layer to keep. Text tokens (the prompt prefix) are always kept
(DESIGN.md §2), so every policy chooses only among the stream's visual and audio tokens. (On a plain
text decoder's cache nothing is protected: see :mod:`omnimem_ref.policies.text`.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from omnimem_ref.core import Backbone, ChunkContext, KVMemory

__all__ = ["Backbone", "ChunkContext", "CompressionPolicy", "KVMemory", "free_slots", "keep_top"]


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
