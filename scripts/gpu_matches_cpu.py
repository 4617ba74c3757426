"""Check that every policy keeps the same tokens and gives the same answers on a GPU as on the CPU.

    python scripts/gpu_matches_cpu.py --data data_samples/tiny [--clips 8] [--budget 0.1]

Streams each clip under every policy on ``cpu`` and on ``cuda`` with the shipped checkpoint and
prints, per policy, on how many clips the final memory was identical and how many answers agreed.
Small differences can appear where two scores tie to within float rounding; large ones are bugs.
(On the lent H100 the same comparison, run by a one-off script on 8 held-out clips at 10%, found
identical memories and identical answers for all 13 policies: results/gpu_check_h100.json.)
"""

from __future__ import annotations

import argparse

import torch

from omnimem_ref.budget import parse_budget
from omnimem_ref.dataset import load_dataset
from omnimem_ref.evaluation import group_by_clip, load_stream
from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.policies import POLICIES, make_policy
from omnimem_ref.streaming.session import StreamingSession


def final_memory_and_answers(model, tokenizer, inputs, policy, budget, questions):
    session = StreamingSession(model, tokenizer, make_policy(policy), budget)
    session.stream(inputs)
    answers = [session.answer(q.question, q.options).choice for q in questions]
    assert session.memory.meta is not None
    return session.memory.meta.position.cpu(), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder written by `omnimem generate`")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--budget", default="0.1")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("This check needs a GPU: torch sees none.")
    torch.set_num_threads(1)
    cpu_model, tokenizer = load_model()
    gpu_model, _ = load_model()
    gpu_model.to("cuda")
    by_clip = group_by_clip(load_dataset(args.data)[0])
    clips = sorted(by_clip)[: args.clips]
    for policy in POLICIES:
        same_memory = same_answers = n_answers = 0
        for clip in clips:
            inputs = load_stream(cpu_model, args.data, clip)
            full = StreamingSession(cpu_model, tokenizer).prefix_length
            full += inputs.n_steps * inputs.tokens_per_step
            budget = None if policy == "full" else parse_budget(args.budget).resolve(full)
            on_cpu = final_memory_and_answers(
                cpu_model, tokenizer, inputs, policy, budget, by_clip[clip]
            )
            on_gpu = final_memory_and_answers(
                gpu_model, tokenizer, inputs, policy, budget, by_clip[clip]
            )
            same_memory += torch.equal(on_cpu[0], on_gpu[0])
            same_answers += sum(a == b for a, b in zip(on_cpu[1], on_gpu[1], strict=True))
            n_answers += len(on_cpu[1])
        print(
            f"{policy:24s} same memory on {same_memory}/{len(clips)} clips, "
            f"same answer to {same_answers}/{n_answers} questions"
        )


if __name__ == "__main__":
    main()
