"""Generate synthetic audio-visual clips (.mp4 + .wav) with their questions and ground truth.

Example: ``omnimem generate --out data/train --n 100 --seed 0``. Every parameter is checked before
anything is written; the directory appears only once it is complete.

``--world classic|hard`` picks the world (``docs/world.md``); each difficulty knob (``--object-size``,
``--motion``, ...) overrides the preset's value. ``classic`` is the default until a TinyOmni
trained on ``hard`` ships, because every number the project quotes is measured on it.

``--format videomme|lvbench|lvomnibench`` also writes the questions in that benchmark's published
schema beside the clips, so ``omnimem bench --benchmark`` can be tried on them
(:mod:`omnimem_ref.real_benchmarks`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omnimem_ref.dataset import generate_dataset
from omnimem_ref.real_benchmarks import FORMATS, write_annotations
from omnimem_ref.world.presets import (
    ALL_FAMILIES,
    CLASSIC,
    HARD,
    PRESETS,
    World,
    parse_families,
    parse_range,
    preset,
    spelled,
)
from omnimem_ref.world.scene import MAX_DURATION, MIN_DURATION

# Each difficulty knob: flag -> (type, metavar, what it does). Defaults come from the presets.
KNOBS: dict[str, tuple[type, str, str]] = {
    "--object-size": (str, "CELLS", "object width in grid cells, W or MIN-MAX"),
    "--motion": (float, "CELLS", "distance an object travels over its life"),
    "--shapes-per-colour": (int, "K", "shapes one colour takes (above 1, questions name both)"),
    "--object-repeats": (int, "K", "most times one object (colour and shape) appears"),
    "--tone-repeats": (int, "K", "most times one pitch plays"),
    "--tone-seconds": (str, "S", "tone length in seconds, S or MIN-MAX"),
    "--distractors": (int, "K", "objects, and tones, that no question is about"),
    "--pan": (float, "CELLS", "background pan speed, grid cells per minute"),
    "--lighting": (float, "A", "relative amplitude of the background's brightness swing"),
    "--families": (str, "LIST", f"question families, comma-separated, of {','.join(ALL_FAMILIES)}"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to create")
    parser.add_argument("--n", required=True, type=int, metavar="N", help="number of clips")
    parser.add_argument("--seed", required=True, type=int, metavar="S", help="random seed")
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help=f"length of every clip, {MIN_DURATION:g} to {MAX_DURATION:g} s (default: each drawn "
        f"from the world's range: {_both('duration_range')})",
    )
    parser.add_argument(
        "--visual-events",
        type=int,
        metavar="K",
        help=f"objects per clip, repeats included (default {_both('visual_events')})",
    )
    parser.add_argument(
        "--audio-events",
        type=int,
        metavar="K",
        help=f"tones per clip, repeats included (default {_both('audio_events')})",
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
    _add_world_arguments(parser.add_argument_group("world (docs/world.md)"))


def _add_world_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--world",
        default="classic",
        choices=sorted(PRESETS),
        help="preset: 'classic' (the default until TinyOmni is retrained on 'hard'; every shipped "
        "number is measured on it) or 'hard' (objects span cells and move, shared colours, repeats, "
        "distractors, drifting background, counting and when questions); the options below "
        "override it",
    )
    for flag, (kind, metavar, text) in KNOBS.items():
        field = flag[2:].replace("-", "_")
        group.add_argument(flag, type=kind, metavar=metavar, help=f"{text} ({_both(field)})")


def _both(field: str) -> str:
    """'classic X, hard Y' for a help text."""
    values = [spelled(getattr(world, field)) for world in (CLASSIC, HARD)]
    return f"classic {values[0]}, hard {values[1]}"


def world_from_args(args: argparse.Namespace) -> World:
    """The preset named by ``--world`` with every knob given on the command line applied."""
    size, tone, families = args.object_size, args.tone_seconds, args.families
    return preset(args.world).overridden(
        object_size=None if size is None else parse_range(size, "--object-size"),
        motion=args.motion,
        shapes_per_colour=args.shapes_per_colour,
        object_repeats=args.object_repeats,
        tone_repeats=args.tone_repeats,
        tone_seconds=None if tone is None else parse_range(tone, "--tone-seconds"),
        distractors=args.distractors,
        pan=args.pan,
        lighting=args.lighting,
        families=None if families is None else parse_families(families),
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
        world=world_from_args(args),
    )
    n_questions = sum(clip["questions"] for clip in manifest["clips"])
    print(f"wrote {len(manifest['clips'])} clips and {n_questions} questions to {args.out}")
    if args.format is not None:
        print(f"wrote {write_annotations(args.format, Path(args.out))}")
