"""Accuracy of a policy at a memory budget on a folder of generated clips.

Prints accuracy overall and per question family, the number of questions, and the peak KV memory
(tokens per layer, and bytes over all layers); ``--json`` prints one JSON object instead.
"""

from __future__ import annotations

import argparse
import json

from omnimem_ref.budget import parse_budget
from omnimem_ref.commands import (
    add_log_length_argument,
    add_model_arguments,
    add_threads_argument,
    apply_threads,
    check_device,
    load_streaming_model,
)
from omnimem_ref.evaluation import evaluate
from omnimem_ref.policies import make_policy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder written by `omnimem generate`")
    parser.add_argument("--policy", default="full", help="compression policy name")
    parser.add_argument("--budget", help="KV tokens per layer (e.g. 500) or a fraction (e.g. 0.1)")
    parser.add_argument("--checkpoint", help="model folder (default: the shipped TinyOmni)")
    parser.add_argument("--adapter", help="LoRA adapter folder written by `omnimem finetune`")
    add_log_length_argument(parser)
    add_model_arguments(parser)
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> None:
    apply_threads(args)
    make_policy(args.policy)
    budget = parse_budget(args.budget) if args.budget is not None else None
    check_device(args.device)
    model, tokenizer, read_clip, _ = load_streaming_model(args)  # TinyOmni or --model's thinker
    result = evaluate(
        model,
        tokenizer,
        args.data,
        args.policy,
        budget,
        progress=not args.json,
        limit=args.limit,
        read_clip=read_clip,
    )
    if args.json:
        print(json.dumps(result.summary()))
        return
    print(f"policy {result.policy}, budget {result.budget or 'none'}: {result.n} questions")
    print(f"  accuracy  {100 * result.accuracy:5.1f}%")
    for family, accuracy in result.by_family.items():
        print(f"  {family:<9} {100 * accuracy:5.1f}%")
    print(f"  peak KV   {result.peak_kv_tokens} tokens per layer, {result.peak_kv_bytes:,} bytes")
    if result.budget_exceeds_stream:
        print(
            f"  note: on {result.budget_exceeds_stream} clip(s) the budget held the whole stream, "
            "so nothing was evicted."
        )
