"""Accuracy and peak memory on long streams: full memory and each policy at fixed token budgets.

    python scripts/long_streams.py --checkpoint runs/tinyomni-hard --world hard
    python scripts/long_streams.py --minutes 5 10 --clips 2 --policies omnimem snapkv \\
        --budgets 512 --work /tmp/long --json results/long_streams.json

For each clip length (default 5, 10, 30 and 60 minutes) it generates ``--clips`` clips of
``--world`` in one folder (made once, then reused), then runs ``omnimem eval`` on that folder in
a fresh process for full memory and for every policy at every budget (KV tokens per layer, the
same for every clip length: a budget is what a device can hold, not a share of the stream). Each
run reports accuracy (with its question count, per family too), the peak resident memory of that
process and how many seconds of video it ingested per second of wall time (the wall time
includes the few seconds a process takes to start and load the model, so short clips read slow).

Under a budget the KV memory is bounded, so peak memory should stay flat as the clip grows; with
full memory it grows with the clip. Every finished run is appended to ``WORK/runs.jsonl``, and a
rerun skips what is there, so a long sweep can be split over several sittings (or the 10-minute
limit of one command on a lent GPU machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval_memory import clip_folder, measure_eval

DEFAULT_POLICIES = ("omnimem", "snapkv", "infinipot-v", "criticalkv", "vnorm", "recent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 10.0, 30.0, 60.0])
    parser.add_argument("--clips", type=int, default=4, help="clips per length (default 4)")
    parser.add_argument("--world", default="hard", help="world preset of the clips (default hard)")
    parser.add_argument("--checkpoint", type=Path, help="TinyOmni folder (default: the shipped)")
    parser.add_argument("--policies", nargs="+", default=list(DEFAULT_POLICIES))
    parser.add_argument("--budgets", nargs="+", default=["512", "2048"], help="KV tokens/layer")
    parser.add_argument("--work", type=Path, default=Path("runs/long_streams"))
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    done = finished_runs(args.work / "runs.jsonl")
    rows = []
    for minutes in sorted(args.minutes):
        seconds = round(60 * minutes)
        data = clip_folder(args.work, seconds, args.clips, args.world, seed=seconds)
        for policy, budget in settings(args.policies, args.budgets):
            key = (str(data), policy, budget, str(args.checkpoint))
            if key not in done:
                run = measure_eval(data, policy, budget, args.checkpoint)
                done[key] = {"minutes": minutes, "clips": args.clips, "policy": policy, **run}
                done[key]["budget"] = budget
                with (args.work / "runs.jsonl").open("a") as log:
                    log.write(json.dumps({"key": list(key), **done[key]}) + "\n")
            rows.append(done[key])
            print_row(done[key])
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"world": args.world, "runs": rows}, indent=1) + "\n")


def settings(policies: list[str], budgets: list[str]) -> list[tuple[str, str]]:
    """Full memory once (its budget is irrelevant), then every policy at every budget."""
    return [("full", "1.0")] + [(p, b) for p in policies if p != "full" for b in budgets]


def finished_runs(path: Path) -> dict[tuple[str, ...], dict]:
    """The runs an earlier sitting finished, by (folder, policy, budget, checkpoint)."""
    if not path.is_file():
        return {}
    runs = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {tuple(run.pop("key")): run for run in runs}


def print_row(run: dict) -> None:
    """One finished run, as it completes."""
    speed = run["clip_seconds"] * run["clips"] / run["wall_seconds"]
    print(
        f"{run['minutes']:g} min, {run['policy']} at {run['budget']}: accuracy "
        f"{100 * run['accuracy']:.1f}% of {run['n']}, peak RSS {run['peak_rss_mib']:.0f} MiB, "
        f"{speed:.1f} s of video per s",
        flush=True,
    )


def table(rows: list[dict]) -> str:
    """Accuracy (%) by clip length (rows) and setting (columns), then peak RSS (MiB) likewise."""
    columns = list(dict.fromkeys(f"{r['policy']}@{r['budget']}" for r in rows))
    lengths = sorted({r["minutes"] for r in rows})
    cell = {(r["minutes"], f"{r['policy']}@{r['budget']}"): r for r in rows}
    width = max(12, *(len(c) + 2 for c in columns))
    header = f"{'minutes':>8}{'questions':>10}" + "".join(f"{c:>{width}}" for c in columns)
    lines = ["accuracy (%)", header]
    for m in lengths:
        n = cell[(m, columns[0])]["n"]
        values = "".join(f"{100 * cell[(m, c)]['accuracy']:>{width}.1f}" for c in columns)
        lines.append(f"{m:>8g}{n:>10}{values}")
    lines += ["", "peak resident memory (MiB)", header]
    for m in lengths:
        values = "".join(f"{cell[(m, c)]['peak_rss_mib']:>{width}.0f}" for c in columns)
        lines.append(f"{m:>8g}{'':>10}{values}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
