"""Two-stage selection around any scorer, as kvpress's ``CriticalKVPress(press)`` wraps any press.

Feng et al. (CriticalKV, 2025) keep part of the budget for the tokens a first score ranks highest,
so that a second, sharper but less safe score cannot lose them:

1. stage 1: the ``n₁ = floor(first_stage_ratio · free)`` evictable rows with the highest first
   score ``a_i`` are force-kept (``free``: the slots left after the protected prompt);
2. stage 2: the remaining slots go to the highest ``(a_i + ε) · b_i``, ``b_i`` the second score.

``TwoStage(first, second, first_stage_ratio, epsilon)`` is itself a (budget-aware) scorer: the
stage-1 rows are lifted above everything with :func:`~omnimem_ref.policies.base.force_keep`, and
:func:`~omnimem_ref.policies.base.keep_top` does the rest. Ties in stage 1 go to the earlier
(older) row (:func:`~omnimem_ref.policies.selection.best_first`).

Rows the first scorer itself force-keeps (SnapKV's window) rank first in stage 1, so they are in
it whenever stage 1 has room for them: always at CriticalKV's defaults, where the window takes at
most a quarter of the free slots and stage 1 holds ``floor(0.5 · free)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import (
    AnyScorer,
    BudgetAwareScorer,
    ChunkContext,
    force_keep,
    free_slots,
    run_scorer,
)
from omnimem_ref.policies.selection import best_first


def top_rows(scores: torch.Tensor, counts: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(units, tokens) booleans: per unit ``l``, the ``counts[l]`` best-scoring ``candidates``
    (ties: the earlier row)."""
    ranked = best_first(scores.float().masked_fill(~candidates, float("-inf")))
    rank = torch.empty_like(ranked).scatter_(
        1, ranked, torch.arange(scores.shape[1], device=scores.device).expand_as(ranked)
    )
    return candidates & (rank < counts.unsqueeze(1))


@dataclass
class TwoStage(BudgetAwareScorer):
    """Stage 1 keeps the top ``floor(first_stage_ratio · free)`` rows by ``first``; stage 2 ranks the
    rest by ``(first + epsilon) · second``."""

    first: AnyScorer
    second: AnyScorer
    first_stage_ratio: float = 0.5
    epsilon: float = 1e-4

    def __post_init__(self) -> None:
        if not 0 <= self.first_stage_ratio <= 1:
            raise ValueError(f"first_stage_ratio must be in [0, 1], got {self.first_stage_ratio}")

    def __call__(self, memory: KVMemory, context: ChunkContext, budget: int) -> torch.Tensor:
        a = run_scorer(self.first, memory, context, budget)
        n_first = (free_slots(memory, budget).clamp_min(0) * self.first_stage_ratio).floor().long()
        stage_1 = top_rows(a, n_first, ~memory.must_keep())
        b = run_scorer(self.second, memory, context, budget)
        return force_keep((a + self.epsilon) * b, stage_1)  # stage 2: (a + ε) · b
