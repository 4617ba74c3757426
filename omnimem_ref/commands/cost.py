"""Compression cost against prefill cost, at TinyOmni's shape or a real model's.

Example: ``omnimem cost --shape qwen2.5-omni-7b --device cuda --dtype bfloat16 --steps 60``.
The model has random weights and the clips are random inputs (see :mod:`omnimem_ref.cost`), so
only the times mean something; ``omnimem bench`` measures accuracy and cost on the trained model.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from omnimem_ref.budget import parse_budget
from omnimem_ref.commands import (
    add_threads_argument,
    apply_threads,
    check_device,
    require_at_least_one,
)
from omnimem_ref.files import atomic_write
from omnimem_ref.policies import parse_policies

DTYPES = ("float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from omnimem_ref.cost import SHAPES

    parser.add_argument(
        "--shape", default="tiny", choices=sorted(SHAPES), help="decoder shape and token rate"
    )
    parser.add_argument("--budget", default="0.1", help="tokens, or a fraction of the stream")
    parser.add_argument(
        "--policies", default="omnimem,vnorm,snapkv", help="comma-separated policy names"
    )
    parser.add_argument("--steps", type=int, default=20, help="steps per clip (default 20)")
    parser.add_argument("--clips", type=int, default=2, help="clips per policy after a warm-up")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--json", metavar="FILE", help="write the records as JSON")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> None:
    budget = parse_budget(args.budget)
    policies = [p for p in parse_policies(args.policies) if p != "full"]
    require_at_least_one(args, "--steps", "--clips")
    apply_threads(args)
    check_device(args.device)
    import torch

    from omnimem_ref.cost import SHAPES, cost_table, measure_cost, random_model, records_as_dicts

    shape = SHAPES[args.shape]
    model, tokenizer = random_model(shape, args.device, getattr(torch, args.dtype))
    print(
        f"{args.shape}: {shape.layers} layers x {shape.hidden} wide, {shape.heads} heads "
        f"({shape.kv_heads} kv), {shape.tokens_per_step} tokens per {shape.step_seconds:g} s step "
        f"({shape.grid**2} visual + {shape.audio_tokens} audio); {args.steps} steps per clip, "
        f"budget {budget}; {args.device}, {args.dtype}, random weights"
    )
    records = measure_cost(model, tokenizer, policies, budget, args.steps, args.clips)
    print(cost_table(records))
    if args.json:
        settings = ("shape", "budget", "steps", "clips", "device", "dtype", "threads")
        payload = {
            **{name: getattr(args, name) for name in settings},
            "shape_detail": asdict(shape),
            "records": records_as_dicts(records),
        }
        path = atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))
        print(f"wrote {path}")
