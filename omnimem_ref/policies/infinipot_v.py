"""``infinipot-v``: temporal redundancy plus value norm, applied whenever memory is full.

Kim et al., "InfiniPot-V: Memory-Constrained KV Cache Compression for Streaming Video
Understanding" (NeurIPS 2025). Query-agnostic, two criteria, each given part of the free slots
(``free``: the budget left after the protected prompt):

- TaR (Temporal-axis Redundancy) gets ``n_tar = free - round((1 - tar_ratio) · free)`` slots. The
  evictable visual tokens of the most recent frames (the newest ``query_ratio`` of the frames in
  memory) are taken first, newest first; the slots left go to the older patch tokens with the
  highest ``TaR_i = -mean_{f recent} cos(k_i, k_{f, patch(i)})`` (a patch that looks the same now
  as then is redundant; one that changed is kept). These picks are force-kept.
- VaN (Value Norm) gets the other ``round((1 - tar_ratio) · free)`` slots: the highest
  ``||v_i||₂`` among the rest (any modality).

Published defaults (the authors' code): ``tar_ratio`` 0.5, ``query_ratio`` 0.25, no pooling of
the value norms. InfiniPot-V compresses when memory reaches its limit ``|M|``; here memory may
exceed the budget by one chunk and is compressed back to the budget, as for every policy, so the
reported budget is the same number for all of them.

Adaptations, each stated: keys are compared with their rotary position undone. (In Qwen2-VL's
M-RoPE the same patch of two frames differs only by the temporal rotation; with TinyOmni's 1D RoPE
it would differ by a rotation of 18 positions per step in every frequency, swamping the content.)
At least one recent frame is used (the code takes ``int(frames · query_ratio)``, which is zero
with fewer than four frames). Audio tokens have no patch: they compete through VaN only.
Layer-wise, cosines and norms are averaged over key/value heads; ``infinipot-v-per-head`` selects
per head, as the authors' code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.core import VISUAL, KVMemory
from omnimem_ref.policies.base import BudgetAwareScorer, ChunkContext, force_keep, free_slots
from omnimem_ref.policies.composed import ComposedPolicy
from omnimem_ref.policies.selection import best_first, content_keys
from omnimem_ref.policies.vnorm import value_norm_scores


def recent_frames(memory: KVMemory, unit: int, query_ratio: float) -> torch.Tensor:
    """(tokens,) booleans: evictable visual tokens of the newest ``query_ratio`` of frames."""
    assert memory.meta is not None
    visual = (memory.meta.modality[unit] == VISUAL) & ~memory.must_keep()[unit]
    times = memory.meta.seconds[unit]
    frames = times[visual].unique()  # sorted
    newest = frames[-max(1, int(len(frames) * query_ratio)) :]
    return visual & torch.isin(times, newest)


def temporal_redundancy(
    memory: KVMemory, context: ChunkContext, unit: int, recent: torch.Tensor
) -> torch.Tensor:
    """(tokens,): TaR, ``-mean_f cos(k_i, k_{f, patch(i)})`` over recent frames (0 if none match),
    the cosine averaged over the unit's key/value heads."""
    assert memory.meta is not None
    keys = torch.nn.functional.normalize(content_keys(memory, context.backbone)[unit], dim=-1)
    patch = memory.meta.patch[unit]
    cosine = torch.einsum("gid,gjd->ij", keys, keys[:, recent]) / keys.shape[0]  # mean over heads
    same_patch = patch.unsqueeze(1) == patch[recent].unsqueeze(0)
    matches = same_patch.sum(1).clamp_min(1)
    return -(cosine * same_patch).sum(1) / matches


def tar_slots(free: int, tar_ratio: float) -> int:
    """TaR's share of ``free`` slots: ``free - round((1 - tar_ratio) · free)`` (VaN gets the rest)."""
    return free - round((1 - tar_ratio) * free)


@dataclass
class InfiniPotVScorer(BudgetAwareScorer):
    """VaN scores ``||v_i||₂``, with TaR's picks (recent frames, then changed patches) force-kept."""

    tar_ratio: float = 0.5
    query_ratio: float = 0.25

    def tar_picks(self, memory: KVMemory, context: ChunkContext, budget: int) -> torch.Tensor:
        """(units, tokens) booleans: the rows TaR keeps, ``tar_slots(free)`` of them at most."""
        assert memory.meta is not None
        visual = (memory.meta.modality == VISUAL) & ~memory.must_keep()
        picks = torch.zeros_like(visual)
        for unit, free in enumerate(free_slots(memory, budget).tolist()):
            n_tar = tar_slots(max(free, 0), self.tar_ratio)
            recent = recent_frames(memory, unit, self.query_ratio)
            newest_first = memory.meta.position[unit].masked_fill(~recent, -1)
            chosen = best_first(newest_first)[: min(n_tar, int(recent.sum()))]
            older = visual[unit] & ~recent
            left = min(n_tar - len(chosen), int(older.sum()))
            if left > 0:
                tar = temporal_redundancy(memory, context, unit, recent)
                tar = tar.masked_fill(~older, float("-inf"))
                chosen = torch.cat([chosen, best_first(tar)[:left]])
            picks[unit, chosen] = True
        return picks

    def __call__(self, memory: KVMemory, context: ChunkContext, budget: int) -> torch.Tensor:
        picks = self.tar_picks(memory, context, budget)
        return force_keep(value_norm_scores(memory), picks)  # TaR's picks, then VaN


class InfiniPotV(ComposedPolicy):
    """Keeps recent frames and changed patches (TaR), then high value norms (VaN)."""

    name = "infinipot-v"

    def __init__(self, tar_ratio: float = 0.5, query_ratio: float = 0.25) -> None:
        super().__init__(InfiniPotVScorer(tar_ratio, query_ratio))
