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
from omnimem_ref.training.train_tiny import FREE_ON_RESUME, TrainConfig, saved_run, train_tiny

# option -> the TrainConfig field it sets. These options default to None (left out): a new run
# then takes TrainConfig's default, a resumed one the value it was started with.
OPTIONS = {
    "--steps": "steps",
    "--seed": "seed",
    "--lr": "learning_rate",
    "--max-seconds": "max_seconds",
    "--batch": "clips_per_batch_at_40s",
    "--workers": "workers",
    "--evidence-weight": "evidence_weight",
    "--save-every": "checkpoint_every",
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
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--log-file", help="also append one JSON line per log entry here")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> None:
    apply_threads(args)
    require_at_least_one(args, "--steps", "--batch", "--workers", "--save-every")
    check_device(args.device)
    resume = args.resume is not None
    out = args.resume if resume else args.out
    config = resumed_config(args) if resume else TrainConfig(**given_settings(args))
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
