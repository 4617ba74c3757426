"""``omnimem bench --benchmark videomme|lvbench|lvomnibench``: a published benchmark through the
streaming session (``docs/qwen2_5_omni.md``, "Real benchmarks").

Example: ``omnimem bench --benchmark videomme --annotations test.parquet --videos videos/
--duration long --model Qwen2.5-Omni-7B-thinker --device cuda --policies omnimem --budgets
4096,16384 --json results/videomme_long.json``. Each answer is appended to an answer log as soon
as it exists (``--json``'s name with ``.answers.jsonl``); ``--resume LOG`` continues one, skipping
what it holds. ``--shard I/N`` runs every N-th video (one process per GPU); ``--merge LOG …``
writes the summary of several logs. Without ``--model``, TinyOmni answers (useful only on clips
made by ``omnimem generate --format``, whose questions are in its vocabulary).

The ``bench`` subcommand defines the options (:mod:`omnimem_ref.commands.bench`); this module
runs them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from omnimem_ref.benchmark import parse_budgets
from omnimem_ref.commands import (
    apply_threads,
    check_device,
    load_streaming_model,
    require_at_least_one,
)
from omnimem_ref.commands.bench import check_slack
from omnimem_ref.errors import OmniMemError
from omnimem_ref.policies import parse_policies
from omnimem_ref.real_benchmarks import MultipleChoice, check_videos, read_benchmark
from omnimem_ref.real_benchmarks.answers import AnswerLog, read_logs
from omnimem_ref.real_benchmarks.formats import get_format
from omnimem_ref.real_benchmarks.multiple_choice import by_video
from omnimem_ref.real_benchmarks.run import Run, Streaming, run_questions, runs_of
from omnimem_ref.real_benchmarks.summary import summarize, table, write_summary

DEFAULT_POLICIES = "omnimem"  # every policy on a 7B model for hours each is rarely what is meant


def run(args: argparse.Namespace) -> None:
    _check_options(args)
    budgets = parse_budgets(args.budgets)
    policies = parse_policies(args.policies or DEFAULT_POLICIES)
    shard = parse_shard(args.shard)
    videos = Path(args.videos or ".")  # a merge reads no video
    questions = read_benchmark(args.benchmark, Path(args.annotations), videos, args.duration)
    questions = select(questions, shard, args.limit)
    summary_path = Path(args.json or f"outputs/bench_{args.benchmark}.json")
    if summary_path.is_dir():
        raise OmniMemError(f"{summary_path} is a folder; give a file name for --json.")

    runs = runs_of(policies, budgets)
    if args.merge:
        _merge(args, questions, runs, summary_path)
        return
    check_videos(questions, get_format(args.benchmark).name)
    _answer_all(args, questions, runs, summary_path)


def _check_options(args: argparse.Namespace) -> None:
    """Refuse, in one sentence, options that are missing, misplaced or out of range."""
    args.device = args.device or "cpu"
    if args.annotations is None or (args.videos is None and not args.merge):
        raise OmniMemError("--benchmark needs --annotations FILE and --videos DIR.")
    for option in ("csv", "plot"):
        if getattr(args, option) is not None:
            raise OmniMemError(
                f"--{option} is the synthetic benchmark's; leave it out with --benchmark."
            )
    if args.merge and (args.shard or args.resume):
        raise OmniMemError("--merge summarizes whole runs; leave out --shard and --resume.")
    require_at_least_one(args, "--limit", "--steps-per-chunk", "--rotary-limit")
    check_slack(args.slack)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"1/4"`` -> (1, 4): the second of four shards; ``None`` -> (0, 1), everything."""
    if text is None:
        return 0, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise OmniMemError(f"--shard {text!r} is not valid; give I/N with 0 <= I < N, e.g. 0/4.")
    return index, count


def select(
    questions: list[MultipleChoice], shard: tuple[int, int], limit: int | None
) -> list[MultipleChoice]:
    """The questions of every N-th video from the I-th (a shard: a video is decoded by one
    process only), then the first ``limit`` of them."""
    index, count = shard
    mine = set(list(by_video(questions))[index::count])
    chosen = [q for q in questions if q.video in mine][:limit]
    if not chosen:
        raise OmniMemError(f"Shard {index}/{count} holds no question; use fewer shards.")
    return chosen


def _answer_all(
    args: argparse.Namespace, questions: list[MultipleChoice], runs: list[Run], summary_path: Path
) -> None:
    apply_threads(args)
    check_device(args.device)
    log_path = Path(args.resume) if args.resume else summary_path.with_suffix(".answers.jsonl")
    model, tokenizer, read_clip, model_settings = load_streaming_model(args)
    streaming = Streaming(args.steps_per_chunk, args.slack, args.rotary_limit)
    settings = {
        "benchmark": args.benchmark,
        "annotations": str(Path(args.annotations).resolve()),
        **model_settings,
        **vars(streaming),
    }
    log = AnswerLog(log_path, settings, resume=args.resume is not None)
    if log.dropped_torn_line:
        print(f"(dropped a half-written last line of {log_path}; its answer is recomputed)")
    before = len(log.lines)
    added = run_questions(
        model, tokenizer, questions, runs, read_clip, log, streaming, progress=not args.quiet
    )
    _finish(
        args, questions, runs, log.lines, summary_path, {**settings, "answers": [str(log_path)]}
    )
    print(f"{added} answers added; {before} were already in {log_path}")


def _merge(
    args: argparse.Namespace, questions: list[MultipleChoice], runs: list[Run], summary_path: Path
) -> None:
    paths = [Path(p) for p in args.merge]
    settings, lines = read_logs(paths)
    _finish(
        args, questions, runs, lines, summary_path, {**settings, "answers": [str(p) for p in paths]}
    )


def _finish(
    args: argparse.Namespace,
    questions: list[MultipleChoice],
    runs: list[Run],
    lines: list[dict[str, Any]],
    summary_path: Path,
    settings: dict[str, Any],
) -> None:
    """Write the summary of ``lines`` over the selected questions, and print its table."""
    about = {
        **settings,
        "videos": str(args.videos),
        "duration": args.duration,
        "shard": args.shard,
        "limit": args.limit,
        "policies": list(dict.fromkeys(policy for policy, _ in runs)),
        "budgets": list(dict.fromkeys(str(b) for _, b in runs if b is not None)),
    }
    summary = summarize(questions, runs, lines, about)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    print(table(summary))
    print(f"wrote {write_summary(summary, summary_path)}")
