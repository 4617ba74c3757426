"""The end-to-end oracle: how far the answer moves when one token is evicted from every layer.

:func:`answer_kl_oracle` evicts one token from every layer of a streamed memory, asks the question
again, and measures ``KL(p_full || p_without_i)`` over the question's options. This is what a score
should predict; it costs one forward pass of the question per token, so it is only for small
models. (The layer-level brute force, one attention recomputed per token, is in
:mod:`omnimem_ref.policies.oracle`.)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from omnimem_ref.streaming.session import StreamingSession


@torch.no_grad()
def answer_kl_oracle(
    session: StreamingSession, question: str, options: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Original positions (n,) of the memory's tokens and ``KL(p_full || p_without_i)`` (n,).

    Needs a memory in which every layer holds the same tokens (e.g. a session without a budget).
    The session's memory is restored afterwards.
    """
    memory = session.memory
    assert memory.meta is not None
    positions = memory.meta.position
    if not torch.equal(positions, positions[:1].expand_as(positions)):
        raise ValueError(
            "the oracle needs the same tokens in every layer (stream without a budget)"
        )
    full = _probabilities(session, question, options)
    divergences = []
    for i in range(len(memory)):
        session.memory = copy.deepcopy(memory)
        rest = torch.arange(len(memory), device=positions.device) != i
        session.memory.keep(rest.nonzero().flatten().expand(memory.n_units, -1))
        without = _probabilities(session, question, options)
        divergences.append((full * (full.log() - without.log())).sum())  # KL(p || p^{-i})
    session.memory = memory
    return positions[0].clone(), torch.stack(divergences)


def _probabilities(
    session: StreamingSession, question: str, options: Sequence[str]
) -> torch.Tensor:
    answer = session.answer(question, options)
    return torch.tensor([answer.probabilities[o] for o in options], dtype=torch.float64)
