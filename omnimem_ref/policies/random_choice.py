"""``random``: keep a uniformly random subset of the evictable tokens.

The floor every scoring rule must beat. (kvpress ships the same baseline as ``RandomPress``.)
Score ``s_i ~ U(0, 1)``, independently per row and layer, so every subset of the evictable rows
of the right size is equally likely to survive. Seeded, so an evaluation is reproducible (the same
seed gives the same sequence of choices); each compression draws fresh numbers.
"""

from __future__ import annotations

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext
from omnimem_ref.policies.composed import ComposedPolicy


class RandomScorer:
    """``s_i ~ U(0, 1)`` from a generator seeded once: reproducible, fresh on every call."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        scores = torch.rand(memory.n_units, len(memory), generator=self.generator)
        return scores.to(memory.must_keep().device)

    def __repr__(self) -> str:
        return f"RandomScorer(seed={self.seed})"


class RandomEviction(ComposedPolicy):
    """Every evictable token is equally likely to survive, independently in each layer."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(RandomScorer(seed))
