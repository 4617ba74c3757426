"""Merge a later run's policies into a benchmark JSON on the same clips: replace or add them.

Two uses:

- one policy's default changes after a full run (e.g. SnapKV's window rule, chosen on the
  validation seed after the run): re-run only the policies it affects and merge, instead of
  re-running every policy;
- a run split over processes (one per core), each given some of the policies: merge them into
  the first, in any order.

Refuses runs that are not the same model on the same clips: their questions, budgets, adapter or
slack differ, or full memory answers any question differently (a stronger check than the
checkpoint's path: a checkpoint copied elsewhere keeps its answers). ``full`` is kept from the
first file; policies are listed in the registry's order.

    omnimem bench --data runs/heldout_default --budgets 0.05,0.1,0.2 \
        --policies snapkv,criticalkv,snapkv-per-head,criticalkv-per-head --json runs/bench_window.json
    python scripts/merge_bench.py results/bench_default.json runs/bench_window.json
"""

from __future__ import annotations

import sys
from dataclasses import replace

from omnimem_ref.benchmark.files import load_result, write_json
from omnimem_ref.benchmark.records import FULL, BenchResult
from omnimem_ref.policies import POLICIES


def merged(base: BenchResult, update: BenchResult) -> BenchResult:
    """``base`` with ``update``'s policies: a policy in both takes ``update``'s records, a new one
    is added after ``base``'s. Raises ``ValueError`` when the runs are not on the same setting."""
    for what in ("questions", "budgets", "adapter", "slack", "log_length_keys"):
        if getattr(base, what) != getattr(update, what):
            raise ValueError(f"The two runs differ in their {what}; they cannot be merged.")
    if base.full and update.full and base.full.predictions != update.full.predictions:
        raise ValueError("Full memory answers differently in the two runs: not the same model.")
    incoming = [p for p in update.policies if p != FULL]
    records = [r for r in base.records if r.policy not in incoming] + [
        r for r in update.records if r.policy in incoming
    ]
    order = {name: i for i, name in enumerate(POLICIES)}
    records.sort(key=lambda r: order.get(r.policy, len(order)))  # stable: budgets stay in order
    policies = sorted({*base.policies, *incoming}, key=lambda p: (order.get(p, len(order)), p))
    return replace(
        base,
        records=records,
        policies=policies,
        wall_seconds=base.wall_seconds + update.wall_seconds,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    base, update = load_result(argv[0]), load_result(argv[1])
    try:
        result = merged(base, update)
    except ValueError as error:
        print(error)
        return 2
    write_json(result, argv[0])
    print(f"merged {', '.join(p for p in update.policies if p != FULL)} into {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
