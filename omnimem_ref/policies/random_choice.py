"""``random``: keep a uniformly random subset of the evictable tokens.

The floor every scoring rule must beat. (kvpress ships the same baseline as ``RandomPress``.)
Seeded, so an evaluation is reproducible; each compression draws fresh numbers.
"""

from __future__ import annotations

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy, keep_top


class RandomEviction(CompressionPolicy):
    """Every evictable token is equally likely to survive, independently in each layer."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        scores = torch.rand(memory.n_layers, len(memory), generator=self.generator)
        return keep_top(scores.to(memory.must_keep().device), budget, memory)
