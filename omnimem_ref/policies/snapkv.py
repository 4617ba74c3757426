"""``snapkv``: attention of an observation window at the end of the input, pooled.

Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation" (NeurIPS 2024). The
queries of the last ``window`` tokens vote for earlier tokens with their attention; the votes are
smoothed with a 1D pooling along the sequence (so the neighbours of an important token come along,
keeping local context intact), and the window itself is kept:

    votes_i = mean_{q in window, h} a_{q,i}^h        (mean_attention of the window's queries)
    s_i     = avg_pool1d(votes, kernel, stride 1, padding kernel // 2)_i

Published defaults: observation window 32, pooling kernel 7, average pooling (the SnapKV repository
initialises window 32, kernel 5; kvpress's ``SnapKVPress`` uses window 64, kernel 5; we take the
paper's window and kernel). Votes are the mean attention over window queries (kvpress; SnapKV sums,
which ranks the same).

**In a stream.** The "input" is each chunk: the window is the chunk's last ``w = min(window,
chunk)`` tokens (18 tokens a step in TinyOmni), since only the chunk just written has hidden
states. As in SnapKV, the earlier rows are pooled on their own (the window's votes never spill onto
them); the window's rows are pooled among themselves, so each row has a score.

**The window rule.** SnapKV keeps the whole window because its budgets (1024 to 4096 tokens) are
32 to 128 times the window: the window is a small part of what is kept, and most of the budget
goes to the votes. In a stream at a 5% budget the roles flip: about 11 free slots after the
9-token prompt, fewer than the 18-token window, so keeping the window would fill every free slot
with the last chunk, and SnapKV would be ``recent``. To keep the paper's relation (the window is
kept, the votes choose most of the rest), the window may take at most a share ``ρ`` of the free
slots:

    forced = min(window, chunk, floor(ρ · free)),   ρ = window_share = 1/4

of the window's newest rows are force-kept (:func:`~omnimem_ref.policies.base.force_keep`); the
rest of the window competes with every other row by its pooled votes. At SnapKV's own budgets
(``ρ · free >= w``) this is exactly SnapKV. ``ρ`` was chosen on the validation seed among a
quarter, a half, three quarters and all of the free slots (``scripts/choose_defaults.py --only
window``): the smaller the share, the better SnapKV and CriticalKV answered (a quarter against a
half: +5.5 [+0.0, +11.0] points at 5% for SnapKV, +7.5 [+2.8, +12.2] for CriticalKV); a share of 0
would drop the window, which is no longer SnapKV. Per layer by default (votes averaged over all
query heads); ``snapkv-per-head`` selects per key/value head with the votes of its query group,
as kvpress does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.attention import mean_attention
from omnimem_ref.policies.base import BudgetAwareScorer, ChunkContext, force_keep, free_slots
from omnimem_ref.policies.composed import ComposedPolicy
from omnimem_ref.policies.queries import chunk_tail


def pool_votes(votes: torch.Tensor, kernel: int) -> torch.Tensor:
    """(units, n) -> (units, n): ``avg_pool1d`` along the rows, stride 1, ``kernel // 2`` zeros
    padded at each end (counted in the mean, as SnapKV and kvpress pool)."""
    if votes.shape[1] == 0:
        return votes
    return F.avg_pool1d(votes.unsqueeze(1), kernel, stride=1, padding=kernel // 2).squeeze(1)


def window_votes(
    memory: KVMemory, context: ChunkContext, window: int = 32, kernel: int = 7
) -> tuple[torch.Tensor, int]:
    """(units, tokens) pooled votes and the window's length ``w``.

    The chunk's tokens are memory's last rows (compression has not run yet), so the window is the
    rows ``[-w:]``; the rows before it and the window are pooled separately.
    """
    proxies = chunk_tail(context, window)
    w = len(proxies[0].positions)
    votes = mean_attention(memory, proxies)  # mean over window queries and heads
    pooled = [pool_votes(votes[:, :-w], kernel), pool_votes(votes[:, -w:], kernel)]
    return torch.cat(pooled, dim=1), w


def newest_evictable(memory: KVMemory, last: int, counts: torch.Tensor) -> torch.Tensor:
    """(units, tokens) booleans: per unit ``l``, the ``counts[l]`` newest evictable rows among
    memory's ``last`` rows."""
    evictable = ~memory.must_keep()
    in_tail = torch.arange(len(memory), device=evictable.device) >= len(memory) - last
    from_end = evictable.flip(1).cumsum(dim=1).flip(1)  # evictable rows at or after each row
    return evictable & in_tail & (from_end <= counts.unsqueeze(1))


@dataclass
class SnapKVScorer(BudgetAwareScorer):
    """Pooled window votes, with ``min(w, floor(window_share · free))`` of the window's newest
    rows force-kept (``window_share = 1``: the paper's whole window whenever it fits)."""

    window: int = 32
    kernel: int = 7
    window_share: float = 0.25  # chosen on the validation seed (module docstring)

    def __post_init__(self) -> None:
        if not 0 <= self.window_share <= 1:
            raise ValueError(f"window_share must be in [0, 1], got {self.window_share}")

    def __call__(self, memory: KVMemory, context: ChunkContext, budget: int) -> torch.Tensor:
        pooled, w = window_votes(memory, context, self.window, self.kernel)
        free = free_slots(memory, budget).clamp_min(0)
        forced = (free * self.window_share).floor().long().clamp(0, w)  # min(w, share · free)
        return force_keep(pooled, newest_evictable(memory, w, forced))


class SnapKV(ComposedPolicy):
    """Keeps the newest part of the chunk-tail window and the tokens it attends to most (pooled)."""

    name = "snapkv"

    def __init__(self, window: int = 32, kernel: int = 7) -> None:
        super().__init__(SnapKVScorer(window, kernel))
