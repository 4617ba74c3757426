"""``criticalkv``: attention weighted by how much a value can move the output, in two stages.

Feng et al., "Identify Critical KV Cache in LLM Inference from an Output Perturbation Perspective"
(2025). Attention alone ignores that a token's effect on the output is ``a_i · W_O v_i``, so a
bound on the output perturbation weights each token's attention by ``||W_O v_i||₁``. To stay safe
when that bound is loose, selection runs in two stages (:class:`~omnimem_ref.policies.two_stage.
TwoStage`):

1. the first ``floor(first_stage_ratio · free)`` slots go to the tokens with the highest attention;
2. the rest go to the highest ``(a_i + ε) · mean_h ||W_O^h v_i||₁``.

``criticalkv = TwoStage(SnapKVScorer(32, 7), ProjectedValueNorm(), 0.5, 1e-4)``: published
defaults (kvpress's ``CriticalKVPress``, the authors' integration): first-stage ratio 0.5,
ε = 1e-4, on top of SnapKV's window attention (window 32, kernel 7 here, as in :mod:`snapkv`,
including its streaming window rule: the window takes at most a quarter of the free slots, half
of stage 1 at ratio 0.5). ``||W_O^h v_i||₁`` is per query head (its slice of ``o_proj``) averaged
over the unit's heads (all of them layer-wise; a key/value head's query group in
``criticalkv-per-head``, which selects per head as the paper and kvpress do). Here "the budget"
of stage 1 is the free slots left after the protected prompt. ``||W_O^h v_i||₁`` depends on the token alone, so
it is computed once when the token enters memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.attention import repeat_kv_heads
from omnimem_ref.policies.base import Backbone, ChunkContext
from omnimem_ref.policies.composed import ComposedPolicy
from omnimem_ref.policies.projection import output_projection_slices, projection_version
from omnimem_ref.policies.snapkv import SnapKVScorer
from omnimem_ref.policies.two_stage import TwoStage


def projected_value_l1(memory: KVMemory, backbone: Backbone) -> torch.Tensor:
    """(units, tokens): ``mean_h ||W_O^h v_i||₁`` over the query heads of each unit, cached per
    token and head."""

    def compute(start: int) -> torch.Tensor:
        w_o = torch.stack(
            [output_projection_slices(backbone, layer) for layer in range(memory.n_layers)]
        )  # (layers, heads, hidden, d)
        values = repeat_kv_heads(memory.all_values(start).float(), w_o.shape[1])
        projected = torch.einsum("lhkd,lhnd->lhnk", w_o, values)  # W_O^h v_i
        return projected.abs().sum(-1)  # ||W_O^h v_i||₁: (layers, heads, new)

    version = projection_version(backbone)
    return memory.per_unit(memory.per_token("criticalkv.wov_l1", compute, version))


@dataclass
class ProjectedValueNorm:
    """``b_i = mean_h ||W_O^h v_i||₁``: how far token ``i``'s value can move the layer's output."""

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        return projected_value_l1(memory, context.backbone)


class CriticalKV(ComposedPolicy):
    """SnapKV attention, re-ranked by projected value norm for the second half of the budget."""

    name = "criticalkv"

    def __init__(
        self,
        window: int = 32,
        kernel: int = 7,
        first_stage_ratio: float = 0.5,
        epsilon: float = 1e-4,
    ) -> None:
        super().__init__(
            TwoStage(SnapKVScorer(window, kernel), ProjectedValueNorm(), first_stage_ratio, epsilon)
        )
