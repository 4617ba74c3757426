"""``infinipot-v``: temporal redundancy plus value norm, applied whenever memory is full.

Kim et al., "InfiniPot-V: Memory-Constrained KV Cache Compression for Streaming Video
Understanding" (NeurIPS 2025). Query-agnostic, two criteria, each given part of the budget:

- TaR (Temporal-axis Redundancy): the most recent frames (``query_ratio`` of the frames in memory)
  are kept; an older patch token scores ``-mean_f cos(k_i, k_{f, same patch})`` over those recent
  frames ``f``, so a patch that looks the same now as then is redundant and one that changed is
  kept. TaR fills ``tar_ratio`` of the budget (recent frames included).
- VaN (Value Norm): the rest of the budget goes to the highest value norms ``||v_i||₂``.

Published defaults (the authors' code): ``tar_ratio`` 0.5, ``query_ratio`` 0.25, no pooling of
the value norms. InfiniPot-V compresses when memory reaches its limit ``|M|``; here memory may
exceed the budget by one chunk and is compressed back to the budget, as for every policy, so the
reported budget is the same number for all of them.

Adaptations, each stated: keys are compared with their rotary position undone. (In Qwen2-VL's
M-RoPE the same patch of two frames differs only by the temporal rotation; with TinyOmni's 1D RoPE
it would differ by a rotation of 18 positions per step in every frequency, swamping the content.)
At least one recent frame is used (the code takes ``int(frames · query_ratio)``, which is zero
with fewer than four frames). Audio tokens have no patch: they compete through VaN only.
Per layer, with cosines and norms averaged over key/value heads (the code selects per head).
"""

from __future__ import annotations

import torch

from omnimem_ref.core import VISUAL, KVMemory
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy, free_slots, keep_top
from omnimem_ref.policies.selection import content_keys
from omnimem_ref.policies.vnorm import value_norm_scores


def recent_frames(memory: KVMemory, layer: int, query_ratio: float) -> torch.Tensor:
    """(tokens,) booleans: evictable visual tokens of the newest ``query_ratio`` of frames."""
    assert memory.meta is not None
    visual = (memory.meta.modality[layer] == VISUAL) & ~memory.must_keep()[layer]
    times = memory.meta.seconds[layer]
    frames = times[visual].unique()  # sorted
    newest = frames[-max(1, int(len(frames) * query_ratio)) :]
    return visual & torch.isin(times, newest)


def temporal_redundancy(
    memory: KVMemory, context: ChunkContext, layer: int, recent: torch.Tensor
) -> torch.Tensor:
    """(tokens,): TaR, ``-mean_f cos(k_i, k_{f, patch(i)})`` over recent frames (0 if none match)."""
    assert memory.meta is not None
    unit = torch.nn.functional.normalize(content_keys(memory, context.backbone)[layer], dim=-1)
    patch = memory.meta.patch[layer]
    cosine = torch.einsum("gid,gjd->ij", unit, unit[:, recent]) / unit.shape[0]  # mean over heads
    same_patch = patch.unsqueeze(1) == patch[recent].unsqueeze(0)
    matches = same_patch.sum(1).clamp_min(1)
    return -(cosine * same_patch).sum(1) / matches


class InfiniPotV(CompressionPolicy):
    """Keeps recent frames and changed patches (TaR), then high value norms (VaN)."""

    name = "infinipot-v"

    def __init__(self, tar_ratio: float = 0.5, query_ratio: float = 0.25) -> None:
        self.tar_ratio = tar_ratio
        self.query_ratio = query_ratio

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        assert memory.meta is not None
        scores = value_norm_scores(memory)  # VaN
        visual = (memory.meta.modality == VISUAL) & ~memory.must_keep()
        for layer, free in enumerate(free_slots(memory, budget).tolist()):
            tar_budget = free - round((1 - self.tar_ratio) * free)
            recent = recent_frames(memory, layer, self.query_ratio)
            newest_first = memory.meta.position[layer].masked_fill(~recent, -1)
            chosen = newest_first.topk(min(tar_budget, int(recent.sum()))).indices
            older = visual[layer] & ~recent
            left = min(tar_budget - len(chosen), int(older.sum()))
            if left > 0:
                tar = temporal_redundancy(memory, context, layer, recent)
                tar = tar.masked_fill(~older, float("-inf"))
                chosen = torch.cat([chosen, tar.topk(left).indices])
            scores[layer, chosen] = scores[layer].max() + 1  # TaR's picks before VaN's
        return keep_top(scores, budget, memory)
