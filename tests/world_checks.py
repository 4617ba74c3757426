"""Checks both worlds' question sets must pass (``test_world.py`` and ``test_world_hard.py``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scipy.stats import chisquare


def assert_balanced(counts: Sequence[int]) -> None:
    """No answer (or answer position) more common than chance allows: a model that always picks
    one must not beat chance. A chi-square test, and no share above 1.5 times a fair one."""
    assert chisquare(counts).pvalue > 1e-3, counts
    assert max(counts) / sum(counts) < 1.5 / len(counts), counts


def assert_evidence_spread(scenes_and_questions, family: str) -> None:
    """A family's evidence falls in the early, middle and late thirds of clips alike (each above
    20%), or keeping only recent tokens would suffice."""
    thirds: Counter = Counter()
    for scene, questions in scenes_and_questions:
        for q in questions:
            if q.family == family:
                for a, b in q.evidence_time:
                    thirds[min(2, int(3 * (a + b) / 2 / scene.duration))] += 1
    total = sum(thirds.values())
    assert all(thirds[k] / total > 0.2 for k in range(3)), thirds
