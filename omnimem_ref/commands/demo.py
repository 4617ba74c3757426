"""Stream a clip through TinyOmni (or Qwen2.5-Omni) with a compression policy; answer its questions.

By default it streams the first bundled sample clip under OmniMem with 10% of the full stream's
memory, prints each question with the truth and the model's answer, and writes a PNG of KV memory
per modality over time. ``--policy full`` keeps everything. ``--model DIR`` streams through a
local Qwen2.5-Omni thinker instead (``docs/qwen2_5_omni.md``), answering by the option letters.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from omnimem_ref.budget import parse_budget
from omnimem_ref.commands import (
    add_model_arguments,
    add_threads_argument,
    apply_threads,
    check_device,
    load_streaming_model,
    require_at_least_one,
)
from omnimem_ref.dataset import load_dataset, sample_clips_dir
from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import stream_tokens
from omnimem_ref.plots import plot_memory
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import StreamingSession

SAMPLE_CLIP = "clip_0000.mp4"  # of the sample clips (`dataset.sample_clips_dir`)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clip", help="an .mp4 (default: the first sample clip, generated once if not bundled)"
    )
    parser.add_argument("--policy", default="omnimem", help="compression policy (default omnimem)")
    parser.add_argument(
        "--budget", default="0.1", help="KV tokens per layer (e.g. 60) or a fraction (default 0.1)"
    )
    parser.add_argument("--checkpoint", help="model folder (default: the shipped TinyOmni)")
    parser.add_argument("--adapter", help="LoRA adapter folder written by `omnimem finetune`")
    add_model_arguments(parser)
    parser.add_argument(
        "--rotary-limit",
        type=int,
        help="compact memory's rotary positions before they reach this (e.g. 32768, Qwen2.5-Omni's "
        "trained range, passed after ~22 minutes); default: never",
    )
    parser.add_argument("--out", default="outputs", help="folder for the memory plot")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> None:
    apply_threads(args)
    require_at_least_one(args, "--rotary-limit")
    policy = make_policy(args.policy)
    budget = parse_budget(args.budget) if args.policy != "full" else None
    check_device(args.device)
    clip_path = Path(args.clip) if args.clip else sample_clips_dir() / SAMPLE_CLIP
    # TinyOmni, or Qwen2.5-Omni's thinker (--model): the same session drives both.
    model, tokenizer, read_clip, _ = load_streaming_model(args)
    inputs = read_clip(model, clip_path)  # the clip as that model reads it (a Stream)
    prefix = len(model.prompt_format(tokenizer).prompt_ids())
    full_tokens = stream_tokens(prefix, inputs.n_steps, inputs.tokens_per_step)
    tokens = budget.resolve(full_tokens) if budget is not None else None
    session = StreamingSession(model, tokenizer, policy, tokens, rotary_limit=args.rotary_limit)
    reports = session.stream(inputs)
    print(
        f"{clip_path.name}: {inputs.n_steps * inputs.step_seconds:g} s, {inputs.n_steps} steps, "
        f"{full_tokens} tokens with full memory; policy {args.policy}, budget {tokens or 'none'}"
    )
    if tokens is not None and tokens >= full_tokens:
        print("note: the budget holds the whole stream, so nothing was evicted.")
    last = reports[-1]
    print(
        "memory at the end: "
        + ", ".join(f"{m} {v:.0f}" for m, v in last.tokens.items())
        + f" tokens per layer ({last.total_bytes:,} bytes)"
    )
    _answer_questions(session, clip_path)
    out = _save_plot(reports, tokens, Path(args.out), clip_path.stem, args.policy)
    print(f"wrote {out}")


def _answer_questions(session: StreamingSession, clip_path: Path) -> None:
    try:
        questions, _, _ = load_dataset(clip_path.parent)
    except OmniMemError:
        print("(no questions.json beside the clip: nothing to ask)")
        return
    correct = 0
    mine = [q for q in questions if q.clip == clip_path.stem]
    for q in mine:
        answer = session.answer(q.question, q.options)
        correct += answer.choice == q.answer
        mark = "ok " if answer.choice == q.answer else "XX "
        print(
            f"  {mark}[{q.family:<8}] {q.question}  truth: {q.answer:<8} model: {answer.choice}"
            f" ({100 * answer.probabilities[answer.choice]:.0f}%)"
        )
    if mine:
        print(f"{correct}/{len(mine)} correct")


def _save_plot(reports, budget: int | None, out_dir: Path, stem: str, policy: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plot_memory(reports, budget, ax)
    ax.set_title(f"KV memory while streaming {stem} ({policy})")
    fig.tight_layout()
    path = out_dir / f"{stem}_{policy}_memory.png"
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
