"""Budget-aware LoRA fine-tuning of TinyOmni under a compression policy (two-pass scheme).

Each step streams fresh clips under the policy at a budget drawn from ``--budgets`` (no
gradients), then trains LoRA adapters with one masked forward pass over the same memory. The
adapter is saved with peft's ``save_pretrained``; ``--adapter DIR`` on ``demo``, ``eval`` and
``bench`` uses it.
"""

from __future__ import annotations

import argparse

from omnimem_ref.commands import (
    add_threads_argument,
    apply_threads,
    check_device,
    require_at_least_one,
)
from omnimem_ref.errors import OmniMemError
from omnimem_ref.world.presets import parse_range


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write the adapter to")
    parser.add_argument("--policy", default="omnimem", help="compression policy to train under")
    parser.add_argument(
        "--budgets",
        default="0.03,0.05",
        help="fractions of the stream, one drawn per batch (default 0.03,0.05: where compression "
        "loses answers; above 5%% OmniMem is already at the ceiling on this world)",
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--clips", type=int, default=4, help="clips per batch")
    parser.add_argument(
        "--seconds",
        default="16-64",
        metavar="MIN-MAX",
        help="length of the training clips, drawn per batch (default 16-64; the hard world's "
        "test clips are 60-120 s long)",
    )
    parser.add_argument(
        "--full-share",
        type=float,
        default=0.2,
        metavar="F",
        help="share of batches trained with full memory, so the adapter keeps the base model's "
        "answers there too (default 0.2)",
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument(
        "--distill",
        type=float,
        default=1.0,
        help="weight of distillation towards the full-memory answers (0 turns it off)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="base model folder (default: the shipped TinyOmni)")
    parser.add_argument(
        "--world",
        help="world preset to draw training clips from (default: the one the base model was "
        "trained on, from its training.json; docs/world.md)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (clips render on the CPU)")
    add_threads_argument(parser)


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0.05,0.1"`` -> (0.05, 0.1); fine-tuning budgets are fractions of each clip's stream."""
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        values = ()
    if not values or not all(0 < v < 1 for v in values):
        raise OmniMemError(
            f"--budgets {text!r} is not valid; give fractions of the stream in (0, 1), "
            "such as 0.05,0.1,0.2."
        )
    return values


def parse_seconds(text: str) -> tuple[float, float]:
    """``"60-120"`` -> (60.0, 120.0): training clips of at least 16 s, the shortest TinyOmni
    was trained on, and at most an hour."""
    shortest, longest = parse_range(text, "--seconds")
    if not 16 <= shortest <= longest <= 3600:
        raise OmniMemError(
            f"--seconds {text!r} is not valid; give clip lengths from 16 to 3600 seconds, "
            "such as 60-120."
        )
    return shortest, longest


def run(args: argparse.Namespace) -> None:
    apply_threads(args)
    budgets = parse_fractions(args.budgets)
    shortest, longest = parse_seconds(args.seconds)
    if not 0 <= args.full_share < 1:
        raise OmniMemError(
            f"--full-share must be at least 0 and below 1 (a share of the batches), "
            f"got {args.full_share:g}."
        )
    require_at_least_one(args, "--steps", "--clips", "--rank")
    check_device(args.device)
    from omnimem_ref.model.checkpoint import load_model, trained_world  # torch loads slowly
    from omnimem_ref.policies import make_policy
    from omnimem_ref.training.finetune import FinetuneConfig, finetune
    from omnimem_ref.world.presets import preset

    make_policy(args.policy)
    world = args.world or trained_world(args.checkpoint)
    preset(world)
    model, tokenizer = load_model(args.checkpoint)
    config = FinetuneConfig(
        policy=args.policy,
        budgets=budgets,
        steps=args.steps,
        clips_per_batch=args.clips,
        min_seconds=shortest,
        max_seconds=longest,
        full_memory_share=args.full_share,
        learning_rate=args.lr,
        rank=args.rank,
        alpha=2 * args.rank,
        distill_weight=args.distill,
        seed=args.seed,
        world=world,
    )
    log = finetune(model, tokenizer, args.out, config, device=args.device)
    print(
        f"saved the adapter to {args.out} after {log[-1]['step']} steps ({log[-1]['seconds']:.0f} s)"
    )
    print("last training accuracy by family:", log[-1]["accuracy"])
