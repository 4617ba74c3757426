"""Generate synthetic audio-visual clips (.mp4 + .wav) with their questions and ground truth.

Example: ``omnimem generate --out data/train --n 100 --seed 0``. Every parameter is checked before
anything is written; the directory appears only once it is complete.

``--format videomme|lvbench|lvomnibench`` also writes the questions in that benchmark's published
schema beside the clips, so ``omnimem bench --benchmark`` can be tried on them
(:mod:`omnimem_ref.real_benchmarks`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omnimem_ref.dataset import DURATION_RANGE, generate_dataset
from omnimem_ref.real_benchmarks import FORMATS, write_annotations


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lo, hi = DURATION_RANGE
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to create")
    parser.add_argument("--n", required=True, type=int, metavar="N", help="number of clips")
    parser.add_argument("--seed", required=True, type=int, metavar="S", help="random seed")
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help=f"length of every clip (default: each drawn from {lo:g} to {hi:g} s)",
    )
    parser.add_argument(
        "--visual-events", type=int, default=4, metavar="K", help="objects per clip (default 4)"
    )
    parser.add_argument(
        "--audio-events", type=int, default=3, metavar="K", help="tones per clip (default 3)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace DIR if it holds an earlier dataset"
    )
    parser.add_argument(
        "--format",
        choices=sorted(FORMATS),
        help="also write the questions as this benchmark publishes them (annotations beside "
        "the clips, for `omnimem bench --benchmark`)",
    )


def run(args: argparse.Namespace) -> None:
    manifest = generate_dataset(
        args.out,
        n=args.n,
        seed=args.seed,
        duration=args.duration,
        n_visual=args.visual_events,
        n_audio=args.audio_events,
        overwrite=args.overwrite,
    )
    n_questions = sum(clip["questions"] for clip in manifest["clips"])
    print(f"wrote {len(manifest['clips'])} clips and {n_questions} questions to {args.out}")
    if args.format is not None:
        print(f"wrote {write_annotations(args.format, Path(args.out))}")
