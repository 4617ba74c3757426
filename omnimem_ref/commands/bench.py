"""Benchmark policies at several memory budgets on a folder of clips: the paper's table.

Example: ``omnimem bench --data data/heldout --budgets 0.05,0.1,0.2 --json results/bench.json``.
Each clip is decoded once; ``full`` runs once as the upper bound and every other policy at every
budget. Prints accuracy (policies x budgets), accuracy per question family, and the cost of
compression relative to prefill; optionally writes JSON, CSV and a plot of accuracy against
budget (each written to a temporary name and renamed into place, so never half-written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omnimem_ref.benchmark import (
    parse_budgets,
    report,
    run_benchmark,
    write_csv,
    write_json,
)
from omnimem_ref.commands import add_threads_argument, apply_threads, require_at_least_one
from omnimem_ref.errors import OmniMemError
from omnimem_ref.policies import parse_policies


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder written by `omnimem generate`")
    parser.add_argument(
        "--budgets",
        required=True,
        help="comma-separated budgets: KV tokens per layer (e.g. 200) or fractions (e.g. 0.1)",
    )
    parser.add_argument(
        "--policies", help="comma-separated policy names (default: every registered policy)"
    )
    parser.add_argument("--json", metavar="FILE", help="write every record as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write one CSV row per policy x budget")
    parser.add_argument("--plot", metavar="FILE", help="write accuracy against budget (.png/.pdf)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N clips")
    parser.add_argument("--checkpoint", help="model folder (default: the shipped TinyOmni)")
    parser.add_argument("--adapter", help="LoRA adapter folder written by `omnimem finetune`")
    parser.add_argument(
        "--steps-per-chunk", type=int, default=1, help="2-second steps per chunk (default 1)"
    )
    parser.add_argument(
        "--slack",
        type=float,
        default=0.0,
        help="compress to (1 - SLACK) x budget, so one compression serves several chunks "
        "(default 0: compress to the budget after every chunk that exceeds it)",
    )
    add_threads_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    budgets = parse_budgets(args.budgets)
    policies = parse_policies(args.policies)
    require_at_least_one(args, "--limit", "--steps-per-chunk")
    if not 0 <= args.slack < 1:
        raise OmniMemError(f"--slack must be at least 0 and below 1, got {args.slack}.")
    apply_threads(args)
    outputs = [Path(p) for p in (args.json, args.csv, args.plot) if p is not None]
    for path in outputs:  # refuse an unwritable destination before the long run, not after
        if path.is_dir():
            raise OmniMemError(f"{path} is a folder; give a file name for the output.")
        path.parent.mkdir(parents=True, exist_ok=True)

    from omnimem_ref.model.checkpoint import load_model  # torch loads slowly: after the checks

    model, tokenizer = load_model(args.checkpoint, args.adapter)
    result = run_benchmark(
        model,
        tokenizer,
        args.data,
        budgets,
        policies,
        limit=args.limit,
        progress=not args.quiet,
        steps_per_chunk=args.steps_per_chunk,
        checkpoint=args.checkpoint,
        adapter=args.adapter,
        slack=args.slack,
    )
    print(report(result))
    print(f"\n{len(result.records)} records in {result.wall_seconds:.0f} s")
    if args.json:
        print(f"wrote {write_json(result, args.json)}")
    if args.csv:
        print(f"wrote {write_csv(result, args.csv)}")
    if args.plot:
        print(f"wrote {_save_plot(result, Path(args.plot))}")


def _save_plot(result, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from omnimem_ref.files import atomic_write
    from omnimem_ref.plots import plot_accuracy_vs_budget

    fig, ax = plt.subplots(figsize=(7, 4.2))
    plot_accuracy_vs_budget(result.records, ax=ax)
    n_clips = len({q["clip"] for q in result.questions})
    ax.set_title(
        f"Accuracy against memory budget ({len(result.questions)} questions, {n_clips} clips)"
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130))
    finally:
        plt.close(fig)
