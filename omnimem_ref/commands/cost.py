"""Compression cost against prefill cost, at TinyOmni's shape or a real model's, over memory sizes.

Examples: ``omnimem cost --shape small --budgets 512,2048,8192 --plot cost.png`` (how cost grows
with memory: each token budget streams until memory is full, then ``--compressions`` more
chunks), or ``omnimem cost --shape qwen2.5-omni-7b --device cuda --dtype bfloat16 --steps 60``
(one budget, 10% of a 60-step stream). The model has random weights and the clips are random
inputs (see :mod:`omnimem_ref.cost`), so only the times mean something; ``omnimem bench``
measures accuracy and cost on the trained model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnimem_ref.budget import Budget, parse_budget
from omnimem_ref.commands import (
    add_threads_argument,
    apply_threads,
    check_device,
    require_at_least_one,
)
from omnimem_ref.errors import OmniMemError
from omnimem_ref.files import atomic_write
from omnimem_ref.policies import parse_policies

if TYPE_CHECKING:  # torch loads slowly: omnimem_ref.cost is imported after the checks
    from omnimem_ref.cost import CostRecord

DTYPES = ("float32", "bfloat16", "float16")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from omnimem_ref.cost import SHAPES

    parser.add_argument(
        "--shape", default="tiny", choices=sorted(SHAPES), help="decoder shape and token rate"
    )
    parser.add_argument(
        "--budgets",
        "--budget",
        dest="budgets",
        default="0.1",
        help="comma-separated budgets: KV tokens per layer (e.g. 512,2048,8192) or fractions of "
        "the stream (e.g. 0.1); default 0.1. --budget is the same option",
    )
    parser.add_argument(
        "--policies", default="omnimem,vnorm,snapkv", help="comma-separated policy names"
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="steps per clip at every budget (default: for a token budget, enough to fill memory "
        "and then compress --compressions times; 20 for a fraction)",
    )
    parser.add_argument(
        "--compressions",
        type=int,
        default=8,
        help="compressions per clip once memory is full, at a token budget (default 8)",
    )
    parser.add_argument(
        "--clips",
        type=int,
        default=1,
        help="counted clips per policy and budget, after one short warm-up clip (default 1)",
    )
    parser.add_argument(
        "--slack",
        type=float,
        default=0.0,
        help="compress to (1 - slack) x budget when memory exceeds the budget (default 0)",
    )
    parser.add_argument(
        "--model",
        metavar="DIR",
        help="measure a local Qwen2.5-Omni thinker folder instead of a random TinyOmni of --shape "
        "(fed random --size x --size frames and noise audio); nothing is downloaded",
    )
    parser.add_argument("--size", type=int, default=448, help="--model: frame side in pixels")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--json", metavar="FILE", help="write the records and settings as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write times against budget (.png/.pdf)")
    add_threads_argument(parser)


def parse_budgets(text: str) -> list[Budget]:
    """``"512,2048,0.1"`` -> budgets in order, duplicates dropped; a bad one is refused in one
    sentence (by :func:`~omnimem_ref.budget.parse_budget`). The benchmark has its own copy, which
    would import the dataset stack with it."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise OmniMemError(
            "No budget given; pass --budgets as a comma-separated list such as 512,2048,8192."
        )
    return list(dict.fromkeys(parse_budget(p) for p in parts))


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad numbers and unwritable outputs before the long run, not after it."""
    require_at_least_one(args, "--steps", "--clips", "--compressions")
    if not 0 <= args.slack < 1:
        raise OmniMemError(f"--slack must be in [0, 1), got {args.slack}.")
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
        raise OmniMemError(f"--plot {args.plot} needs a .png, .pdf or .svg file name.")
    for output in (args.json, args.plot):
        if output is None:
            continue
        path = Path(output)
        if path.is_dir():
            raise OmniMemError(f"{path} is a folder; give a file name for the output.")
        path.parent.mkdir(parents=True, exist_ok=True)


def run(args: argparse.Namespace) -> None:
    budgets = parse_budgets(args.budgets)
    policies = [p for p in parse_policies(args.policies) if p != "full"]
    check_options(args)
    apply_threads(args)
    check_device(args.device)
    import torch

    from omnimem_ref.cost import (
        SHAPES,
        cost_table,
        growth_lines,
        measure_cost,
        random_model,
    )

    streams = None  # TinyOmni's random encoder inputs
    model: Any  # a random TinyOmni of --shape, or the thinker in --model
    tokenizer: Any
    if args.model is not None:  # the thinker in --model, fed random frames and noise audio
        from omnimem_ref.model.qwen_omni.loading import load_thinker
        from omnimem_ref.model.qwen_omni.shapes import random_thinker_stream

        model = load_thinker(args.model, args.device, args.dtype)
        tokenizer = model.tokenizer

        def streams(steps: int, seed: int) -> Any:
            return random_thinker_stream(model, steps * 2.0, args.size, seed)

        detail = _thinker_detail(model, streams(1, 0))
    else:
        model, tokenizer = random_model(SHAPES[args.shape], args.device, getattr(torch, args.dtype))
        detail = asdict(SHAPES[args.shape])
    print(_describe(args, detail, budgets), flush=True)
    started = time.perf_counter()
    records = measure_cost(
        model,
        tokenizer,
        policies,
        budgets,
        steps=args.steps,
        clips=args.clips,
        compressions=args.compressions,
        slack=args.slack,
        on_record=lambda r: print(
            f"  measured {r.policy} at {r.budget_tokens} tokens", file=sys.stderr, flush=True
        ),
        streams=streams,
    )
    print(cost_table(records))
    for line in growth_lines(records):
        print(line)
    print(f"\n{len(records)} records in {time.perf_counter() - started:.0f} s")
    if args.json:
        print(f"wrote {_write_json(args, detail, budgets, records)}")
    if args.plot:
        print(f"wrote {_save_plot(args, records)}")


def _thinker_detail(model: Any, stream: Any) -> dict[str, Any]:
    """The measured thinker's decoder shape and token rate, as :class:`Shape` describes one."""
    text = model.config.text_config
    return {
        "layers": text.num_hidden_layers,
        "hidden": text.hidden_size,
        "heads": text.num_attention_heads,
        "kv_heads": text.num_key_value_heads,
        "intermediate": text.intermediate_size,
        "visual_tokens": stream.visual_tokens_per_step,
        "audio_tokens": stream.audio_tokens_per_step,
        "step_seconds": stream.step_seconds,
    }


def _describe(args: argparse.Namespace, detail: dict[str, Any], budgets: list[Budget]) -> str:
    """The settings a reader needs to interpret the table, printed before the (long) run."""
    length = (
        f"{args.steps} steps per clip"
        if args.steps
        else f"token budgets fill memory then compress {args.compressions} times "
        f"(fractions: 20 steps)"
    )
    slack = f", slack {args.slack:g}" if args.slack else ""
    visual = detail.get("visual_tokens", detail.get("grid", 0) ** 2)
    name = f"thinker in {args.model}" if args.model else args.shape
    weights = "its own weights, random frames" if args.model else "random weights"
    return (
        f"{name}: {detail['layers']} layers x {detail['hidden']} wide, {detail['heads']} heads "
        f"({detail['kv_heads']} kv), {visual + detail['audio_tokens']} tokens per "
        f"{detail['step_seconds']:g} s step ({visual} visual + {detail['audio_tokens']} audio); "
        f"budgets {','.join(str(b) for b in budgets)}; {length}; {args.clips} counted clip(s) "
        f"after a short warm-up{slack}; {args.device}, {args.dtype}, {weights}\n"
        "prefill ms: per chunk once memory is full (the chunks that compressed); compress/prefill: "
        "one compression per such prefill; amortised: all compression / all prefill"
    )


def _write_json(
    args: argparse.Namespace,
    detail: dict[str, Any],
    budgets: list[Budget],
    records: list[CostRecord],
) -> Path:
    from omnimem_ref.cost import records_as_dicts

    settings = ("shape", "model", "size", "steps", "compressions", "clips", "slack", "device")
    payload = {
        **{name: getattr(args, name) for name in (*settings, "dtype", "threads")},
        "budgets": [str(b) for b in budgets],
        "shape_detail": detail,
        "records": records_as_dicts(records),
    }
    return atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))


def _save_plot(args: argparse.Namespace, records: list[CostRecord]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from omnimem_ref.plots import plot_cost_vs_budget

    fig, ax = plt.subplots(figsize=(7, 4.2))
    plot_cost_vs_budget(records, ax=ax)
    name = "thinker" if args.model else args.shape
    ax.set_title(f"Compression and prefill time against memory ({name}, {args.device})")
    fig.tight_layout()
    try:
        return atomic_write(args.plot, lambda tmp: fig.savefig(tmp, dpi=130))
    finally:
        plt.close(fig)
