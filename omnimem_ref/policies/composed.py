"""A policy assembled from parts: scoring, then modality allocation, then selection.

    policy = ComposedPolicy(
        scorer=PerturbationScorer(proxy="uniform"),  # step 1: (units, tokens) scores
        allocation=ScoreMass(floor=0.1),              # step 2: shares per modality (None: global)
        selection=RedundancyAware(),                  # step 3: which tokens fill each share
    )

Scoring comes first because the ``mass`` allocation divides the budget by score mass.

Every baseline is the simplest composition, "score, then keep the top": ``ComposedPolicy(scorer)``
(no allocation, ``top_k`` selection, i.e. :func:`~omnimem_ref.policies.base.keep_top`), in a thin
subclass that sets its ``name`` and its paper's defaults. The scorer may be budget-aware
(:class:`~omnimem_ref.policies.base.BudgetAwareScorer`); it is then told the budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from omnimem_ref.policies.allocation import Allocation, allocate
from omnimem_ref.policies.base import (
    AnyScorer,
    BudgetAwareScorer,
    ChunkContext,
    CompressionPolicy,
    Scorer,
    run_scorer,
)
from omnimem_ref.policies.selection import Selection, top_k

if TYPE_CHECKING:
    from omnimem_ref.core import KVMemory

__all__ = ["AnyScorer", "BudgetAwareScorer", "ComposedPolicy", "Scorer"]


class ComposedPolicy(CompressionPolicy):
    """Scores every cached token, splits the budget across modalities, selects within shares."""

    name = "composed"

    def __init__(
        self,
        scorer: AnyScorer,
        allocation: Allocation | None = None,
        selection: Selection = top_k,
    ) -> None:
        self.scorer = scorer
        self.allocation = allocation
        self.selection = selection

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        scores = run_scorer(self.scorer, memory, context, budget)
        shares = None
        if self.allocation is not None:
            shares = allocate(self.allocation, memory, scores, budget)
        return self.selection(scores, memory, context, shares, budget)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(scorer={self.scorer!r}, allocation={self.allocation!r}, "
            f"selection={self.selection!r})"
        )
