"""Train TinyOmni from scratch on freshly generated clips and save the checkpoint.

The shipped checkpoint in ``omnimem_ref/checkpoints/tinyomni`` was made by this command with the
defaults on one H100 with 14 batch-rendering workers in 407 s (``scripts/train_on_gpu.sh``). The
same recipe runs on a CPU, only slower: rendering fresh clips is most of a step's cost, so give it
``--workers`` (one per spare core); see the README for measured CPU timings.
"""

from __future__ import annotations

import argparse

from omnimem_ref.commands import (
    add_threads_argument,
    apply_threads,
    check_device,
    require_at_least_one,
)
from omnimem_ref.training.train_tiny import TrainConfig, train_tiny


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--out", required=True, help="folder to write the checkpoint to")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=defaults.max_seconds,
        help="longest clip duration to train on",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=defaults.clips_per_batch_at_40s,
        help="clips per batch at 40 s (scaled by 40 s / duration)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="processes rendering batches (use most CPU cores when training on a GPU)",
    )
    parser.add_argument(
        "--evidence-weight",
        type=float,
        default=defaults.evidence_weight,
        help="weight of the attention-to-evidence loss (0 turns it off)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--log-file", help="also append one JSON line per log entry here")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> None:
    apply_threads(args)
    require_at_least_one(args, "--steps", "--batch", "--workers")
    check_device(args.device)
    config = TrainConfig(
        steps=args.steps,
        seed=args.seed,
        learning_rate=args.lr,
        max_seconds=args.max_seconds,
        clips_per_batch_at_40s=args.batch,
        workers=args.workers,
        evidence_weight=args.evidence_weight,
    )
    log = train_tiny(args.out, config, device=args.device, log_file=args.log_file)
    last = log[-1]
    print(f"saved {args.out} after {last['step']} steps ({last['seconds']:.0f} s);")
    print("last training accuracy by family:", last["accuracy"])
