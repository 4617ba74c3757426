"""What a compression policy is, and the pieces every baseline is built from.

After each chunk, if a layer's memory holds more than the budget ``B`` tokens, the session asks the
policy which ``B`` rows of each *unit* to keep (:meth:`CompressionPolicy.select`). A unit is a
layer (layer-wise, the default: every key/value head of a layer keeps the same tokens) or one
key/value head of a layer (head-wise, :class:`~omnimem_ref.policies.per_head.PerHead`, as SnapKV
and kvpress select); every tensor below is ``(units, tokens)`` either way. Text tokens (the
prompt prefix) are always kept (``docs/design.md`` §2), so every policy chooses only among the
stream's visual and audio tokens. (On a plain text decoder's cache nothing is protected: see
:mod:`omnimem_ref.policies.text`.)

Every baseline is "score, then keep the top", as in kvpress (a ``ScorerPress``):

- a **scorer** maps memory to ``(units, tokens)`` scores, higher keeps
  (``scorer(memory, context)``);
- :func:`keep_top` keeps, per unit, every protected row and the ``free = B - protected``
  highest-scoring others.

Some methods also keep rows whatever their score: SnapKV's observation window, StreamingLLM's
sinks, CriticalKV's first stage, InfiniPot-V's TaR picks. Their scorers say so with
:func:`force_keep`, which lifts those rows above every other score. How many rows such a method
may force depends on the budget (SnapKV's window takes at most a quarter of the free slots), so its scorer
is a :class:`BudgetAwareScorer`, called as ``scorer(memory, context, budget)``;
:func:`run_scorer` calls either kind.

**Ties.** Equal scores are broken by position: the earlier (older) row first, stably (a stable
descending sort, the same rule as :func:`~omnimem_ref.policies.selection.best_first`). Rows are in
stream order, so the earlier row is the older token.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch

from omnimem_ref.core import Backbone, ChunkContext, KVMemory

__all__ = [
    "AnyScorer",
    "Backbone",
    "BudgetAwareScorer",
    "ChunkContext",
    "CompressionPolicy",
    "KVMemory",
    "Scorer",
    "force_keep",
    "free_slots",
    "keep_top",
    "run_scorer",
]


class CompressionPolicy(ABC):
    """Chooses, per unit (layer, or key/value head of a layer), which cached tokens survive."""

    name: str
    # True: the session keeps one token set per key/value head (memory built head-wise).
    head_wise: ClassVar[bool] = False

    @abstractmethod
    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        """(units, budget) indices of the rows to keep, ascending in each unit.

        The session calls it only when memory holds more than ``budget`` rows; asked for at least
        as many rows as memory holds, a policy keeps them all (``(units, len(memory))``).
        """


# scorer(memory, context) -> (units, tokens) scores, higher keeps.
Scorer = Callable[[KVMemory, ChunkContext], torch.Tensor]


class BudgetAwareScorer(ABC):
    """A scorer whose scores depend on the budget: it force-keeps rows, as many as the free slots
    allow (SnapKV's window, CriticalKV's first stage, InfiniPot-V's TaR share)."""

    @abstractmethod
    def __call__(self, memory: KVMemory, context: ChunkContext, budget: int) -> torch.Tensor:
        """(units, tokens) scores, higher keeps, for a compression to ``budget`` rows."""


AnyScorer = Scorer | BudgetAwareScorer


def run_scorer(
    scorer: AnyScorer, memory: KVMemory, context: ChunkContext, budget: int
) -> torch.Tensor:
    """``scorer``'s (units, tokens) scores; the budget is passed only to a budget-aware one."""
    if isinstance(scorer, BudgetAwareScorer):
        return scorer(memory, context, budget)
    return scorer(memory, context)


def keep_top(scores: torch.Tensor, budget: int, memory: KVMemory) -> torch.Tensor:
    """(units, budget) rows, ascending: every protected row, then the highest ``scores``.

    ``kept = protected ∪ top_free(s_i : i evictable)``, ``free = budget - |protected|``. Rows are
    ranked best first by score, ties to the earlier (older) row, and protected rows are moved
    ahead of all of them whatever their score (two stable sorts). The result is sorted so the cache
    keeps its stream order. A budget of at least ``len(memory)`` keeps every row.
    """
    ranked = scores.float().argsort(dim=1, descending=True, stable=True)  # ties: older first
    protected = memory.must_keep().gather(1, ranked)
    ranked = ranked.gather(1, protected.byte().argsort(dim=1, descending=True, stable=True))
    return ranked[:, :budget].sort(dim=1).values


def force_keep(scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``scores`` (units, tokens) with ``rows`` (units, tokens booleans) lifted above every
    other row of their unit: ``s'_i = max_j s_j + |max_j s_j| + 1`` for forced ``i``, ``s_i``
    otherwise (max over finite scores; ``+ |max|`` keeps the lift above the maximum even where
    ``+ 1`` alone would be rounded away). Forced rows tie among themselves, so if more are forced
    than fit, :func:`keep_top` keeps the older ones."""
    scores = scores.float()
    top = scores.masked_fill(~scores.isfinite(), float("-inf")).amax(dim=1, keepdim=True)
    top = top.nan_to_num(0.0, neginf=0.0)  # a unit with no finite score
    return torch.where(rows, top + top.abs() + 1, scores)


def free_slots(memory: KVMemory, budget: int) -> torch.Tensor:
    """(units,) slots left for evictable tokens once the protected ones are kept."""
    return budget - memory.must_keep().sum(dim=1)
