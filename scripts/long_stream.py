"""Stream a long random clip through a model of a real shape and watch memory and speed stay flat.

    python scripts/long_stream.py --shape qwen2.5-omni-7b --device cuda --dtype bfloat16 \
        --budget 16384 --minutes 120 --policy omnimem --json results/long_stream_7b.json
    python scripts/long_stream.py --thinker --shape qwen2.5-omni-7b --device cuda \
        --dtype bfloat16 --budget 16384 --minutes 10 --json results/long_stream_thinker_7b.json

The model has random weights and the clip is random inputs: by default a TinyOmni of that shape
fed random encoder outputs (``omnimem_ref.cost``); with ``--thinker``, Qwen2.5-Omni's own thinker
class with that decoder and the published vision and audio encoders
(``omnimem_ref.model.qwen_omni.shapes``), fed random ``--size`` x ``--size`` frames at 2 per second
and noise audio, so the encoders' time is counted in each chunk's prefill. The answers mean
nothing; the work, the memory and the times are real. Every ``--report-every``
seconds of stream it prints the seconds of video ingested per second of compute over that window,
the KV tokens held per layer, the time of one compression as a share of one chunk's prefill, and
(on a GPU) the peak memory allocated during the window. With a budget, memory and time per chunk
must stop growing once the budget is reached; without one (``--budget none``) they grow with the
stream. Prepared for a lent GPU; on a CPU use a small shape and a few minutes to try it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import torch

from omnimem_ref.cost import SHAPES, random_model, random_stream
from omnimem_ref.files import atomic_write
from omnimem_ref.model.qwen_omni.shapes import random_thinker_stream, shaped_thinker
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import StreamingSession


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="small", choices=sorted(SHAPES))
    parser.add_argument("--budget", default="16384", help="KV tokens per layer, or 'none'")
    parser.add_argument("--minutes", type=float, default=10.0, help="stream length")
    parser.add_argument("--policy", default="omnimem")
    parser.add_argument("--slack", type=float, default=0.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds of stream")
    parser.add_argument("--json")
    parser.add_argument(
        "--thinker", action="store_true", help="Qwen2.5-Omni's thinker class, not TinyOmni"
    )
    parser.add_argument("--size", type=int, default=448, help="--thinker: frame side in pixels")
    parser.add_argument(
        "--encoders",
        default="published",
        choices=("published", "tiny"),
        help="--thinker: the published vision/audio encoders, or one-layer ones (CPU tries)",
    )
    args = parser.parse_args(argv)

    shape = SHAPES[args.shape]
    dtype = getattr(torch, args.dtype)
    model: Any
    if args.thinker:
        model = shaped_thinker(shape, args.encoders, args.device, dtype)
        tokenizer = model.tokenizer
        inputs: Any = random_thinker_stream(model, args.minutes * 60, args.size)
    else:
        model, tokenizer = random_model(shape, args.device, dtype)
        n_steps = int(args.minutes * 60 / shape.step_seconds)
        inputs = random_stream(model.config.feature_spec, n_steps, seed=0, dtype=dtype)
    steps, step_seconds = inputs.n_steps, inputs.step_seconds
    budget = None if args.budget == "none" else int(args.budget)
    policy = None if budget is None else make_policy(args.policy)
    session = StreamingSession(model, tokenizer, policy, budget, slack=args.slack)
    cuda = args.device.startswith("cuda")
    every = max(1, int(args.report_every / step_seconds))
    kind = "Qwen2.5-Omni thinker" if args.thinker else "TinyOmni"
    print(
        f"{kind} of shape {args.shape} on {args.device} ({args.dtype}), {args.policy} at "
        f"{args.budget} tokens, {steps} steps of {step_seconds:g} s ({inputs.tokens_per_step} tokens each)"
    )
    print(
        f"{'stream min':>10} {'video s / s':>11} {'tokens':>7} {'compress/prefill':>17} "
        f"{'peak GiB':>9}"
    )
    windows = []
    for start in range(0, steps, every):
        if cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        began = time.perf_counter()
        reports = [
            session.feed(inputs, range(s, s + 1)) for s in range(start, min(start + every, steps))
        ]
        wall = time.perf_counter() - began
        prefill = sum(r.prefill_seconds for r in reports)
        compressed = [r.compress_seconds for r in reports if r.compressed]
        window = {
            "stream_minutes": reports[-1].seconds / 60,
            "video_seconds_per_second": len(reports) * step_seconds / wall,
            "tokens_per_layer": reports[-1].total_tokens,
            "compress_per_prefill": (
                (sum(compressed) / len(compressed)) / (prefill / len(reports))
                if compressed
                else 0.0
            ),
            "peak_gib": torch.cuda.max_memory_allocated(args.device) / 2**30 if cuda else None,
        }
        windows.append(window)
        peak = "-" if window["peak_gib"] is None else f"{window['peak_gib']:.2f}"
        print(
            f"{window['stream_minutes']:10.1f} {window['video_seconds_per_second']:11.1f} "
            f"{window['tokens_per_layer']:7.0f} {window['compress_per_prefill']:16.1%} {peak:>9}"
        )
    if args.json:
        payload = {**vars(args), "windows": windows}
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))
        print(f"wrote {args.json}")
    return windows


if __name__ == "__main__":
    main()
