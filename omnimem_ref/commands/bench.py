"""Benchmark policies at several memory budgets on a folder of clips: the paper's table.

Example: ``omnimem bench --data data/heldout --budgets 0.05,0.1,0.2 --json results/bench.json``.
Each clip is decoded once; ``full`` runs once as the upper bound and every other policy at every
budget. Prints accuracy (policies x budgets), accuracy per question family, and the cost of
compression relative to prefill; optionally writes JSON, CSV and a plot of accuracy against
budget (each written to a temporary name and renamed into place, so never half-written).

``--benchmark videomme|lvbench|lvomnibench`` runs a published benchmark instead
(:mod:`omnimem_ref.commands.bench_real`, ``docs/qwen2_5_omni.md``).
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
from omnimem_ref.commands import (
    add_log_length_argument,
    add_threads_argument,
    apply_threads,
    require_at_least_one,
)
from omnimem_ref.errors import OmniMemError
from omnimem_ref.policies import parse_policies


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="folder written by `omnimem generate` (or give --benchmark, below)"
    )
    parser.add_argument(
        "--budgets",
        required=True,
        help="comma-separated budgets: KV tokens per layer (e.g. 200) or fractions (e.g. 0.1)",
    )
    parser.add_argument(
        "--policies",
        help="comma-separated policy names (default: every registered policy; with --benchmark: "
        "omnimem; full runs there only if named)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="write every record as JSON (with --benchmark: the summary; default "
        "outputs/bench_BENCHMARK.json, answers logged beside it in FILE.answers.jsonl)",
    )
    parser.add_argument("--csv", metavar="FILE", help="write one CSV row per policy x budget")
    parser.add_argument("--plot", metavar="FILE", help="write accuracy against budget (.png/.pdf)")
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="only the first N clips (with --benchmark: questions)",
    )
    parser.add_argument("--checkpoint", help="model folder (default: the shipped TinyOmni)")
    parser.add_argument("--adapter", help="LoRA adapter folder written by `omnimem finetune`")
    add_log_length_argument(parser)
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
    _add_real_benchmark_arguments(parser)


def _add_real_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``--benchmark`` runs (:mod:`omnimem_ref.commands.bench_real`)."""
    from omnimem_ref.real_benchmarks import FORMATS
    from omnimem_ref.real_benchmarks.videomme import DURATIONS

    group = parser.add_argument_group("published benchmarks")
    group.add_argument("--benchmark", choices=sorted(FORMATS), help="a published benchmark")
    group.add_argument("--annotations", metavar="FILE", help="its annotation file, as published")
    group.add_argument("--videos", metavar="DIR", help="the folder holding its videos")
    group.add_argument("--duration", choices=DURATIONS, help="Video-MME: only videos this long")
    group.add_argument(
        "--model", metavar="DIR", help="a local Qwen2.5-Omni thinker folder (default: TinyOmni)"
    )
    group.add_argument("--device", help="cpu or cuda (default cpu)")
    group.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="weights of --model (default: bfloat16 on cuda, float32 on cpu)",
    )
    group.add_argument(
        "--rotary-limit", type=int, help="compact rotary positions before this (e.g. 32768)"
    )
    group.add_argument(
        "--resume", metavar="LOG", help="continue this answer log, skipping what it holds"
    )
    group.add_argument(
        "--shard", metavar="I/N", help="only every N-th video, from the I-th (one process per GPU)"
    )
    group.add_argument(
        "--merge", nargs="+", metavar="LOG", help="summarize these answer logs (shards); no model"
    )


REAL_ONLY = (  # options that mean nothing without --benchmark
    "annotations",
    "videos",
    "duration",
    "model",
    "device",
    "dtype",
    "rotary_limit",
    "resume",
    "shard",
    "merge",
)


def run(args: argparse.Namespace) -> None:
    if args.benchmark is not None:
        from omnimem_ref.commands import bench_real

        bench_real.run(args)
        return
    if args.data is None:
        raise OmniMemError("Give --data (generated clips) or --benchmark (a published benchmark).")
    for name in REAL_ONLY:
        if getattr(args, name) is not None:
            option = "--" + name.replace("_", "-")
            raise OmniMemError(f"{option} applies to --benchmark runs; leave it out with --data.")
    budgets = parse_budgets(args.budgets)
    policies = parse_policies(args.policies)
    require_at_least_one(args, "--limit", "--steps-per-chunk")
    check_slack(args.slack)
    apply_threads(args)
    outputs = [Path(p) for p in (args.json, args.csv, args.plot) if p is not None]
    for path in outputs:  # refuse an unwritable destination before the long run, not after
        if path.is_dir():
            raise OmniMemError(f"{path} is a folder; give a file name for the output.")
        path.parent.mkdir(parents=True, exist_ok=True)

    from omnimem_ref.model.checkpoint import load_model

    model, tokenizer = load_model(args.checkpoint, args.adapter, args.log_length_keys)
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


def check_slack(slack: float) -> None:
    """Refuse a ``--slack`` outside [0, 1) (both kinds of run)."""
    if not 0 <= slack < 1:
        raise OmniMemError(f"--slack must be at least 0 and below 1, got {slack}.")


def _save_plot(result, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from omnimem_ref.files import atomic_write
    from omnimem_ref.plots import plot_accuracy_vs_budget
    from omnimem_ref.policies.per_head import SUFFIX

    n_clips = len({q["clip"] for q in result.questions})
    title = f"Accuracy against memory budget ({len(result.questions)} questions, {n_clips} clips)"
    head_wise = [p for p in result.policies if p.endswith(SUFFIX)]
    if not head_wise:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        plot_accuracy_vs_budget(result.records, ax=ax)
        ax.set_title(title)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:  # one panel per granularity, on one scale: per layer, then per key/value head
        fig, axes = plt.subplots(1, 2, figsize=(14, 4.6), sharey=True)
        layer_wise = [p for p in result.policies if p not in head_wise]
        panels = ((layer_wise, "one token set per layer"), (head_wise, "per key/value head"))
        for ax, (policies, kind) in zip(axes, panels, strict=True):
            plot_accuracy_vs_budget(result.records, ax=ax, policies=policies)
            ax.set_title(kind)
            ax.legend(fontsize=7, loc="lower right", ncol=2)
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130))
    finally:
        plt.close(fig)
