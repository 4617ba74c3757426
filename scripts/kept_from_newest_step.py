"""What share of the stream tokens a policy holds at the end of a clip come from the newest
2-second step, averaged over clips: 100% for ``recent``; a policy whose protected window fills
memory would be close to it.

    python scripts/kept_from_newest_step.py runs/heldout_default --budget 0.05 --clips 20 \
        --policies recent,snapkv,snapkv-per-head,criticalkv,random,omnimem
"""

from __future__ import annotations

import argparse

from omnimem_ref.budget import parse_budget
from omnimem_ref.core import TEXT
from omnimem_ref.evaluation import load_stream
from omnimem_ref.features import stream_tokens
from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.model.tokenizer import prompt_length
from omnimem_ref.policies import make_policy, parse_policies
from omnimem_ref.streaming.session import StreamingSession


def newest_step_share(session: StreamingSession, tokens_per_step: int) -> float:
    """Share of memory's stream rows (all units) holding tokens of the last step streamed."""
    meta = session.memory.meta
    assert meta is not None
    stream = meta.modality != TEXT
    newest = meta.position >= session.next_position - tokens_per_step
    return float((newest & stream).sum() / stream.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--budget", default="0.05")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--policies", default="recent,snapkv,criticalkv,random,omnimem")
    args = parser.parse_args()
    model, tokenizer = load_model(None)
    budget = parse_budget(args.budget)
    names = [f"clip_{i:04d}" for i in range(args.clips)]
    streams = {name: load_stream(model, args.data, name) for name in names}
    prompt = prompt_length(tokenizer)
    for policy in parse_policies(args.policies):
        shares = []
        for inputs in streams.values():
            full = stream_tokens(prompt, inputs.n_steps, inputs.tokens_per_step)
            session = StreamingSession(model, tokenizer, make_policy(policy), budget.resolve(full))
            session.stream(inputs)
            shares.append(newest_step_share(session, inputs.tokens_per_step))
        print(f"{policy:<20} {100 * sum(shares) / len(shares):5.1f}% from the newest step")


if __name__ == "__main__":
    main()
