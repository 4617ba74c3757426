"""Train TinyOmni from scratch on freshly generated clips and save the checkpoint.

The shipped checkpoint in ``omnimem_ref/checkpoints/tinyomni`` was made by this command with the
defaults on one H100 with 14 batch-rendering workers in 407 s (``scripts/train_on_gpu.sh``). The
same recipe runs on a CPU, only slower: rendering fresh clips is most of a step's cost, so give it
``--workers`` (one per spare core); see the README for measured CPU timings.

A long run can be split into sittings: every ``--save-every`` steps the checkpoint folder also
gets what continuing needs (``DIR/resume/``), and ``--resume DIR`` picks the run up from there,
ending with the same weights as a run that never stopped. Stop it at any time (Ctrl-C); the steps
since the last save are done again. Options left out on ``--resume`` keep the run's own values;
one given must agree with them (``--save-every`` excepted).

``--world hard`` trains on the hard world; ``--stretch-share``, ``--stretch-seconds``,
``--time-periods`` and ``--no-time-ramp`` make a model for streams of any length up to an hour
(``docs/training.md``). Their defaults keep the shipped recipe.

``--init-from CKPT`` starts a new run from a finished checkpoint's weights, with a fresh optimiser
and learning-rate schedule: a longer schedule for a model that was still learning when its own
ended. Options left out take the values CKPT was trained with; those that would change the
model's shape or time features are refused.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from omnimem_ref.commands import (
    add_threads_argument,
    apply_threads,
    check_device,
    require_at_least_one,
)
from omnimem_ref.errors import OmniMemError
from omnimem_ref.training.objective import COUNT_TARGETS
from omnimem_ref.training.train_tiny import FREE_ON_RESUME, TrainConfig, saved_run, train_tiny
from omnimem_ref.world.presets import PRESETS, parse_families
from omnimem_ref.world.scene import MIN_DURATION

# option -> the TrainConfig field it sets. These options default to None (left out): a new run
# then takes TrainConfig's default, a resumed one the value it was started with.
OPTIONS = {
    "--steps": "steps",
    "--seed": "seed",
    "--lr": "learning_rate",
    "--max-seconds": "max_seconds",
    "--min-seconds": "min_seconds",
    "--curriculum-seconds": "curriculum_seconds",
    "--short-share": "short_share",
    "--batch": "clips_per_batch_at_40s",
    "--workers": "workers",
    "--evidence-weight": "evidence_weight",
    "--save-every": "checkpoint_every",
    "--log-every": "log_every",
    "--world": "world",
    "--families": "families",
    "--stretch-share": "stretch_share",
    "--stretch-seconds": "stretch_seconds",
    "--time-periods": "time_periods",
    "--time-ramp": "time_ramp",
    "--time-log": "time_log",
    "--question-time": "question_time",
    "--count-target": "count_target",
    "--count-boost": "count_boost",
    "--layers": "layers",
    "--width": "width",
    "--frame-context": "frame_context",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", help="folder to write the checkpoint to")
    where.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the interrupted run saved in DIR from its last save, to its --steps "
        "(same final weights as an uninterrupted run); options left out keep the run's values",
    )
    parser.add_argument(
        "--init-from",
        metavar="CKPT",
        help="with --out: start from the weights in the checkpoint folder CKPT, with a fresh "
        "optimiser and schedule; options left out take CKPT's training settings (give a new "
        "--seed, or the batches repeat CKPT's own)",
    )
    parser.add_argument(
        "--steps", type=int, help=f"training steps in all (default {defaults.steps})"
    )
    parser.add_argument(
        "--seed", type=int, help=f"seeds the model and the batch stream (default {defaults.seed})"
    )
    parser.add_argument(
        "--lr", type=float, help=f"peak learning rate (default {defaults.learning_rate})"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        help=f"longest clip duration to train on (default {defaults.max_seconds:g})",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        help=f"shortest clip duration to train on (default {defaults.min_seconds:g})",
    )
    parser.add_argument(
        "--curriculum-seconds",
        type=float,
        help="longest clip in the first half of the steps, which learn fastest on short clips "
        f"(default {defaults.curriculum_seconds:g}; set it to --max-seconds for long clips "
        "throughout, e.g. a warm start on long real clips)",
    )
    parser.add_argument(
        "--short-share",
        type=float,
        metavar="F",
        help="share of the second half's steps that stay at the first half's clip lengths, so "
        f"a schedule on long clips keeps the short ones (default {defaults.short_share:g})",
    )
    parser.add_argument(
        "--batch",
        type=int,
        help="clips per batch at 40 s, scaled by 40 s / duration "
        f"(default {defaults.clips_per_batch_at_40s})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="processes rendering batches; use most CPU cores when training on a GPU "
        f"(default {defaults.workers}; the batches drawn depend on it)",
    )
    parser.add_argument(
        "--evidence-weight",
        type=float,
        help="weight of the attention-to-evidence loss, 0 turns it off "
        f"(default {defaults.evidence_weight:g})",
    )
    parser.add_argument(
        "--save-every",
        type=int,
        metavar="N",
        help="save the checkpoint, with what --resume needs, every N steps "
        f"(default {defaults.checkpoint_every}); a stopped run loses at most N steps",
    )
    parser.add_argument(
        "--log-every",
        type=int,
        metavar="N",
        help=f"log the losses and the accuracy window every N steps (default {defaults.log_every})",
    )
    parser.add_argument("--layers", type=int, help=f"backbone layers (default {defaults.layers})")
    parser.add_argument(
        "--width",
        type=int,
        help=f"backbone width, a multiple of 64 (default {defaults.width}; heads of 32)",
    )
    parser.add_argument(
        "--frame-context",
        action=argparse.BooleanOptionalAction,
        help="let each patch token see the patches around it, one 3 x 3 convolution over the "
        "frame, as a real vision encoder's tokens see their frame (default: no; "
        "docs/training.md)",
    )
    add_long_stream_arguments(parser, defaults)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--log-file", help="also append one JSON line per log entry here")
    add_threads_argument(parser)


def add_long_stream_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """The world, and the long-stream recipe (docs/training.md)."""
    group = parser.add_argument_group("world and long streams (docs/training.md)")
    group.add_argument(
        "--world",
        choices=sorted(PRESETS),
        help=f"the world clips and questions are drawn from (default {defaults.world}; "
        "docs/world.md)",
    )
    group.add_argument(
        "--families",
        type=families_option,
        metavar="LIST",
        help="ask only these of the world's question families, comma-separated (default: all; "
        "a short check of a few families learns them in fewer steps)",
    )
    group.add_argument(
        "--stretch-share",
        type=float,
        metavar="F",
        help="share of batches made to stand for a longer clip, their steps spread over it "
        f"(default {defaults.stretch_share:g}: none)",
    )
    group.add_argument(
        "--stretch-seconds",
        type=float,
        metavar="S",
        help=f"longest clip a stretched batch stands for (default {defaults.stretch_seconds:g})",
    )
    group.add_argument(
        "--time-periods",
        type=parse_periods,
        metavar="LIST",
        help="periods in seconds of the time features' sinusoids, comma-separated (default "
        + ",".join(f"{p:g}" for p in defaults.time_periods)
        + ")",
    )
    group.add_argument(
        "--time-ramp",
        action=argparse.BooleanOptionalAction,
        help="give the time features the ramp t / longest time (default: yes; it grows without "
        "bound past the longest time trained on)",
    )
    group.add_argument(
        "--time-log",
        action=argparse.BooleanOptionalAction,
        help="add the log time log(1 + t) / log(1 + longest time) to the time features (default: "
        "no; it makes 'which third of the clip' one threshold for clips of every length)",
    )
    group.add_argument(
        "--question-time",
        action=argparse.BooleanOptionalAction,
        help="give questions the time features of the moment they are asked (default: no)",
    )
    group.add_argument(
        "--count-target",
        choices=COUNT_TARGETS,
        help="what counting questions' attention is supervised towards: all of each instance "
        "(instances), each instance's first step and one fixed token (onsets), an even share on "
        "each of those (spread), from every head (spread-per-head) (default: "
        f"{defaults.count_target}; docs/training.md, 'When and how many')",
    )
    group.add_argument(
        "--count-boost",
        type=float,
        metavar="F",
        help="with a spread count target, weigh the counting questions' attention loss F times "
        f"(default {defaults.count_boost:g}; docs/training.md, 'Counting, read from attention')",
    )


def families_option(text: str) -> tuple[str, ...]:
    """``--families`` as argparse wants it: a bad list is a usage error, not a traceback."""
    try:
        return parse_families(text)
    except OmniMemError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_periods(text: str) -> tuple[float, ...]:
    """``"8,32,128"`` -> (8.0, 32.0, 128.0); positive numbers only."""
    try:
        periods = tuple(float(p) for p in text.split(","))
    except ValueError:
        periods = ()
    if not periods or any(p <= 0 for p in periods):
        raise argparse.ArgumentTypeError(
            f"expected positive periods in seconds, comma-separated, such as 8,32,128; got {text!r}"
        )
    return periods


def check_settings(config: TrainConfig) -> None:
    """Refuse, in one sentence, settings a run cannot train with."""
    if config.layers < 2 or config.width < 64 or config.width % 64:
        raise OmniMemError(
            f"--layers must be 2 or more and --width a multiple of 64 (heads of 32 dimensions, "
            f"in pairs), got {config.layers} and {config.width}."
        )
    if not 0 <= config.short_share <= 1:
        raise OmniMemError(f"--short-share must be between 0 and 1, got {config.short_share:g}.")
    if not 0 <= config.stretch_share <= 1:
        raise OmniMemError(
            f"--stretch-share must be between 0 and 1, got {config.stretch_share:g}."
        )
    if config.count_boost <= 0 or (
        config.count_boost != 1 and not config.count_target.startswith("spread")
    ):
        raise OmniMemError(
            f"--count-boost must be above 0, and other than 1 only with --count-target spread or "
            f"spread-per-head, got {config.count_boost:g} with {config.count_target}."
        )
    if not MIN_DURATION <= config.min_seconds <= min(config.curriculum_seconds, config.max_seconds):
        raise OmniMemError(
            f"--min-seconds ({config.min_seconds:g}) must be at least {MIN_DURATION:g} and at most "
            f"--curriculum-seconds ({config.curriculum_seconds:g}) and --max-seconds "
            f"({config.max_seconds:g}): every step draws a clip length between them."
        )
    if config.stretch_share > 0 and config.stretch_seconds < config.max_seconds:
        raise OmniMemError(
            f"--stretch-seconds ({config.stretch_seconds:g}) must be at least --max-seconds "
            f"({config.max_seconds:g}): a stretched clip stands for a longer one."
        )


def run(args: argparse.Namespace) -> None:
    apply_threads(args)
    if args.init_from is not None and args.resume is not None:
        raise OmniMemError(
            "--init-from starts a new run (with --out); a resumed run goes on from its own last "
            "save, so leave --init-from out."
        )
    require_at_least_one(
        args, "--steps", "--batch", "--workers", "--save-every", "--log-every", "--stretch-seconds"
    )
    check_device(args.device)
    resume = args.resume is not None
    out = args.resume if resume else args.out
    config = resumed_config(args) if resume else new_config(args)
    check_settings(config)
    log = train_tiny(out, config, device=args.device, log_file=args.log_file, resume=resume)
    last = log[-1]
    print(f"saved {out} after {last['step']} steps ({last['seconds']:.0f} s);")
    print("last training accuracy by family:", last["accuracy"])


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields set by the options given on the command line."""
    values = {
        field: getattr(args, option[2:].replace("-", "_")) for option, field in OPTIONS.items()
    }
    return {field: value for field, value in values.items() if value is not None}


def new_config(args: argparse.Namespace) -> TrainConfig:
    """A new run's settings: the options given, over TrainConfig's defaults or, with
    ``--init-from CKPT``, over the settings CKPT was trained with."""
    if args.init_from is None:
        return TrainConfig(**given_settings(args))
    warm_from = saved_run(args.init_from, action="start from").config
    return replace(warm_from, **given_settings(args), init_from=args.init_from)


def resumed_config(args: argparse.Namespace) -> TrainConfig:
    """The settings of the run saved in ``--resume DIR``. An option given must agree with them,
    but for ``--save-every``: the others change what is learnt, so the result would match no
    uninterrupted run."""
    saved = saved_run(args.resume).config
    given = given_settings(args)
    for option, field in OPTIONS.items():
        if field in given and field not in FREE_ON_RESUME and given[field] != getattr(saved, field):
            raise OmniMemError(
                f"{option} {given[field]} differs from the {getattr(saved, field)} the run in "
                f"{args.resume} was started with; leave it out to resume that run."
            )
    return replace(saved, **{f: v for f, v in given.items() if f in FREE_ON_RESUME})
