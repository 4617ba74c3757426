"""How sure is a difference in accuracy? A paired bootstrap over clips.

A benchmark asks several questions of each clip, and they are not independent: when a policy
evicts the frames where the red square appears, every question about that square fails together.
Resampling single questions would treat 800 questions from 200 clips as 800 independent draws and
give intervals that are too narrow, so the resampling unit is the clip (a cluster bootstrap).

The comparison is paired: both policies answered the very same questions, so each resample draws
one set of clips and scores both policies on it. Whatever makes a clip easy or hard cancels in
the difference, and the interval is much narrower than comparing two independent accuracies.

For ``k`` clips, clip ``j`` with ``n_j`` questions of which policy A got ``a_j`` right and B
``b_j``, one resample draws ``k`` clip indices ``j_1 .. j_k`` with replacement and computes

    d* = 100 * (Σ_r b_{j_r} - Σ_r a_{j_r}) / Σ_r n_{j_r}

(the difference of the two pooled accuracies of the resample). The interval is the percentile
interval of ``d*``: its 2.5% and 97.5% quantiles for a 95% level. Differences are always
``b - a`` in percentage points (100 x the difference of two fractions), as the tables print them.

With few clips the interval is only rough, and with one clip it collapses to the estimate: one
clip says nothing about how the next one would go.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omnimem_ref.errors import OmniMemError

if TYPE_CHECKING:  # benchmark imports this module
    from omnimem_ref.benchmark import BenchRecord

N_RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95
_BLOCK = 2**22  # clip indices drawn at once (32 MiB), so many clips do not exhaust memory


@dataclass(frozen=True)
class Interval:
    """A difference in accuracy points, ``b - a``, with its bootstrap interval."""

    estimate: float  # the observed difference on all clips
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        """``+2.5 [+0.8, +4.1]``."""
        return f"{_signed(self.estimate)} [{_signed(self.low)}, {_signed(self.high)}]"


def _signed(points: float) -> str:
    return f"{round(points, 1) + 0.0:+.1f}"  # + 0.0 turns -0.0 into 0.0: no "-0.0"


def paired_bootstrap(
    correct_a: Sequence[bool],
    correct_b: Sequence[bool],
    clusters: Sequence[Hashable],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """Accuracy of B minus accuracy of A (points), with a ``level`` percentile interval from
    ``n_resamples`` resamples of whole clusters (``clusters[i]``: the clip of question ``i``)."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if not len(a) == len(b) == len(clusters) or len(a) == 0:
        raise ValueError("need one clip and two answers per question, and at least one question")
    # Per clip: questions n_j and hits a_j, b_j (the resampling only needs these sums).
    _, clip = np.unique(np.asarray(clusters), return_inverse=True)
    n_j = np.bincount(clip).astype(float)
    a_j, b_j = np.bincount(clip, weights=a), np.bincount(clip, weights=b)
    estimate = 100 * (b_j.sum() - a_j.sum()) / n_j.sum()
    diffs = _resampled_differences(a_j, b_j, n_j, n_resamples, np.random.default_rng(seed))
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(low), float(high))


def _resampled_differences(
    a_j: np.ndarray, b_j: np.ndarray, n_j: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``d* = 100 (Σ_r b_{j_r} - Σ_r a_{j_r}) / Σ_r n_{j_r}`` for each of ``n_resamples`` draws of
    ``k`` clips with replacement, drawn in blocks of rows."""
    k = len(n_j)
    rows = max(1, _BLOCK // k)
    out = []
    for start in range(0, n_resamples, rows):
        j = rng.integers(k, size=(min(rows, n_resamples - start), k))  # one resample per row
        out.append(100 * (b_j[j].sum(axis=1) - a_j[j].sum(axis=1)) / n_j[j].sum(axis=1))
    return np.concatenate(out)


def answered_right(record: BenchRecord, questions: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Per question, whether ``record`` answered it right (``questions``: ``BenchResult.questions``,
    each with its ``answer``; the record's ``predictions`` are aligned with them)."""
    if len(record.predictions) != len(questions):
        raise OmniMemError(
            f"{record.policy} @ {record.budget or 'no budget'} has "
            f"{len(record.predictions)} answers for {len(questions)} questions; "
            "rerun `omnimem bench --json` to record every answer."
        )
    return [p == q["answer"] for p, q in zip(record.predictions, questions, strict=True)]


def record_difference(
    a: BenchRecord,
    b: BenchRecord,
    questions: Sequence[Mapping[str, Any]],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """``b``'s accuracy minus ``a``'s (points) on ``questions`` (``BenchResult.questions``, each
    with ``clip`` and ``answer``; both records' ``predictions`` are aligned with them)."""
    return paired_bootstrap(
        answered_right(a, questions),
        answered_right(b, questions),
        [q["clip"] for q in questions],
        n_resamples=n_resamples,
        seed=seed,
        level=level,
    )


def accuracy_interval(record: BenchRecord, questions: Sequence[Mapping[str, Any]]) -> Interval:
    """``record``'s accuracy (%) with its 95% bootstrap interval over clips: the difference from
    answering nothing right, so clips are resampled exactly as for every difference above."""
    right = answered_right(record, questions)
    return paired_bootstrap([False] * len(right), right, [q["clip"] for q in questions])
