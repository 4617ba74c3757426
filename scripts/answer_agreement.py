"""On how many questions two policies give the same answer, per budget, from a bench JSON.

Why: a policy that keeps only the newest tokens answers like ``recent``; high agreement with
``recent`` is how the SnapKV window problem showed itself (docs/design.md §3). Agreement between two
near-chance policies is high too (the model then falls back on the same default answers), so read
it beside ``random``'s agreement with ``recent``.

    python scripts/answer_agreement.py results/bench_default.json recent snapkv snapkv-per-head random
"""

from __future__ import annotations

import sys

from omnimem_ref.benchmark.files import load_result
from omnimem_ref.budget import budget_label


def agreement(predictions_a: list[str], predictions_b: list[str]) -> float:
    """Share of questions on which both answered the same."""
    same = sum(a == b for a, b in zip(predictions_a, predictions_b, strict=True))
    return same / len(predictions_a)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    result = load_result(argv[0])
    reference, others = argv[1], argv[2:]
    print(f"answers equal to {reference}'s (%)")
    print(f"{'policy':<24}" + "".join(f"{budget_label(b):>9}" for b in result.budgets))
    for policy in others:
        cells = [
            agreement(result.record(policy, b).predictions, result.record(reference, b).predictions)
            for b in result.budgets
        ]
        print(f"{policy:<24}" + "".join(f"{100 * c:9.1f}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
