"""``snapkv``: attention of an observation window at the end of the input, pooled.

Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation" (NeurIPS 2024). The
queries of the last ``window`` tokens vote for earlier tokens with their attention; the votes are
smoothed with a 1D pooling along the sequence (so the neighbours of an important token come along,
keeping local context intact), and the window itself is always kept.

Published defaults: observation window 32, pooling kernel 7, average pooling (the SnapKV repository
initialises window 32, kernel 5; kvpress's ``SnapKVPress`` uses window 64, kernel 5; we take the
paper's window and kernel). Votes are the mean attention over window queries (kvpress; SnapKV sums,
which ranks the same).

Here the "input" is each chunk: the window is the chunk's last ``window`` tokens, at most the whole
chunk (18 tokens a step in TinyOmni), since only the chunk just written has hidden states. Per
layer, not per head: votes are averaged over all query heads (kvpress averages within each GQA
group and selects per key/value head; our memory keeps one token set per layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.attention import mean_attention
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy, keep_top
from omnimem_ref.policies.queries import chunk_tail


def snapkv_scores(
    memory: KVMemory, context: ChunkContext, window: int = 32, kernel: int = 7
) -> torch.Tensor:
    """(layers, tokens): pooled window votes; the window's own rows score above everything else.

    The chunk's tokens are memory's last rows (compression has not run yet), so the window is
    ``[-w:]``.
    """
    proxies = chunk_tail(context, window)
    w = len(proxies[0].positions)
    votes = mean_attention(memory, proxies)[:, :-w]  # mean over window queries and heads
    pooled = F.avg_pool1d(votes.unsqueeze(1), kernel, stride=1, padding=kernel // 2).squeeze(1)
    above_all = pooled.max(dim=1, keepdim=True).values + 1  # the window is always kept
    return torch.cat([pooled, above_all.expand(-1, w)], dim=1)


class SnapKV(CompressionPolicy):
    """Keeps the chunk-tail window and the tokens it attends to most (pooled)."""

    name = "snapkv"
    needs_hidden_states = True

    def __init__(self, window: int = 32, kernel: int = 7) -> None:
        self.window = window
        self.kernel = kernel

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        return keep_top(snapkv_scores(memory, context, self.window, self.kernel), budget, memory)
