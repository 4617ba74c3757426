"""Replace some policies' records of a benchmark JSON with those of a later run on the same clips.

Used when one policy's default changes after a full run (e.g. SnapKV's window rule, chosen on the
validation seed after the run): re-run only the policies it affects, then merge, instead of
re-running every policy. Refuses runs whose questions or budgets differ.

    omnimem bench --data runs/heldout_default --budgets 0.05,0.1,0.2 \
        --policies snapkv,criticalkv,snapkv-per-head,criticalkv-per-head --json runs/bench_window.json
    python scripts/merge_bench.py results/bench_default.json runs/bench_window.json
"""

from __future__ import annotations

import sys
from dataclasses import replace

from omnimem_ref.benchmark.files import load_result, write_json
from omnimem_ref.benchmark.records import FULL


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    base, update = load_result(argv[0]), load_result(argv[1])
    if base.questions != update.questions or base.budgets != update.budgets:
        print("The two runs differ in their questions or budgets; they cannot be merged.")
        return 2
    replaced = {r.policy for r in update.records if r.policy != FULL}
    missing = replaced - set(base.policies)
    if missing:
        print(f"{', '.join(sorted(missing))} not in {argv[0]}; only re-runs can be merged.")
        return 2
    merged = replace(
        base,
        records=[
            update.record(r.policy, r.budget) if r.policy in replaced else r for r in base.records
        ],
        wall_seconds=base.wall_seconds + update.wall_seconds,
    )
    write_json(merged, argv[0])
    print(f"replaced {', '.join(sorted(replaced))} in {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
