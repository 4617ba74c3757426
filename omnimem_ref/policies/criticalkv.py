"""``criticalkv``: attention weighted by how much a value can move the output, in two stages.

Feng et al., "Identify Critical KV Cache in LLM Inference from an Output Perturbation Perspective"
(2025). Attention alone ignores that a token's effect on the output is ``a_i · W_O v_i``, so a
bound on the output perturbation weights each token's attention by ``||W_O v_i||₁``. To stay safe
when that bound is loose, selection runs in two stages:

1. the first ``first_stage_ratio`` of the budget goes to the tokens with the highest attention;
2. the rest goes to the highest ``(attention + ε) · ||W_O v_i||₁``.

Published defaults (kvpress's ``CriticalKVPress``, the authors' integration): first-stage ratio 0.5,
ε = 1e-4, on top of SnapKV's window attention (window 32, kernel 7 here, as in :mod:`snapkv`).
``||W_O v_i||₁`` is per query head (its slice of ``o_proj``) averaged over heads; per layer, not
per head. Here "the budget" of stage 1 is the free slots left after the protected prompt.
``||W_O^h v_i||₁`` depends on the token alone, so it is computed once when the token enters memory.
"""

from __future__ import annotations

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.attention import repeat_kv_heads
from omnimem_ref.policies.base import (
    Backbone,
    ChunkContext,
    CompressionPolicy,
    free_slots,
    keep_top,
)
from omnimem_ref.policies.projection import output_projection_slices, projection_version
from omnimem_ref.policies.snapkv import snapkv_scores


def projected_value_l1(memory: KVMemory, backbone: Backbone) -> torch.Tensor:
    """(layers, tokens): ``mean_h ||W_O^h v_i||₁``, cached per token."""

    def compute(start: int) -> torch.Tensor:
        w_o = torch.stack(
            [output_projection_slices(backbone, layer) for layer in range(memory.n_layers)]
        )  # (layers, heads, hidden, d)
        values = repeat_kv_heads(memory.all_values(start).float(), w_o.shape[1])
        projected = torch.einsum("lhkd,lhnd->lhnk", w_o, values)  # W_O^h v_i
        return projected.abs().sum(-1).mean(1, keepdim=True)  # mean_h ||W_O^h v_i||₁

    version = projection_version(backbone)
    return memory.per_token("criticalkv.wov_l1", compute, version)[:, 0]


class CriticalKV(CompressionPolicy):
    """SnapKV attention, re-ranked by projected value norm for the second half of the budget."""

    name = "criticalkv"
    needs_hidden_states = True

    def __init__(
        self,
        window: int = 32,
        kernel: int = 7,
        first_stage_ratio: float = 0.5,
        epsilon: float = 1e-4,
    ) -> None:
        self.window = window
        self.kernel = kernel
        self.first_stage_ratio = first_stage_ratio
        self.epsilon = epsilon

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        attention = snapkv_scores(memory, context, self.window, self.kernel)
        evictable = ~memory.must_keep()
        norms = projected_value_l1(memory, context.backbone)
        scores = (attention + self.epsilon) * norms  # stage 2: (a + ε) · ||W_O v||₁
        first = (free_slots(memory, budget) * self.first_stage_ratio).long()
        for layer, n_first in enumerate(first.tolist()):  # stage 1: top attention, kept outright
            candidates = attention[layer].masked_fill(~evictable[layer], float("-inf"))
            chosen = candidates.topk(n_first).indices
            scores[layer, chosen] = scores[layer].max() + 1
        return keep_top(scores, budget, memory)
