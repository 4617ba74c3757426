"""A policy assembled from parts: scoring, then modality allocation, then selection.

    policy = ComposedPolicy(
        scorer=PerturbationScorer(proxy="uniform"),  # stage 2: (layers, tokens) scores
        allocation=ScoreMass(floor=0.1),              # stage 1: shares per modality (None: global)
        selection=RedundancyAware(),                  # stage 3: which tokens fill each share
    )

Scoring comes first because the ``mass`` allocation divides the budget by score mass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from omnimem_ref.policies.allocation import Allocation, allocate
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy
from omnimem_ref.policies.selection import Selection, top_k

if TYPE_CHECKING:
    from omnimem_ref.core import KVMemory

Scorer = Callable[["KVMemory", ChunkContext], torch.Tensor]


class ComposedPolicy(CompressionPolicy):
    """Scores every cached token, splits the budget across modalities, selects within shares."""

    name = "composed"

    def __init__(
        self,
        scorer: Scorer,
        allocation: Allocation | None = None,
        selection: Selection = top_k,
    ) -> None:
        self.scorer = scorer
        self.allocation = allocation
        self.selection = selection

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        scores = self.scorer(memory, context)
        shares = None
        if self.allocation is not None:
            shares = allocate(self.allocation, memory, scores, budget)
        return self.selection(scores, memory, context, shares, budget)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(scorer={self.scorer!r}, allocation={self.allocation!r}, "
            f"selection={self.selection!r})"
        )
