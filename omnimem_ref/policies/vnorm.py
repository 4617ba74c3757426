"""``vnorm``: keep the tokens whose values have the highest L2 norm (VaN).

A value's norm bounds how much the token can add to any head's output, whatever the query; it
is InfiniPot-V's "Value Norm" (VaN) importance used on its own (Kim et al., "InfiniPot-V:
Memory-Constrained KV Cache Compression for Streaming Video Understanding", NeurIPS 2025), with no
parameters. Score ``s_i = ||v_i||₂``, per layer, averaged over key/value heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext
from omnimem_ref.policies.composed import ComposedPolicy


def value_norm_scores(memory: KVMemory) -> torch.Tensor:
    """(units, tokens): ``mean_g ||v_i^g||₂`` over the key/value heads ``g`` of each unit."""
    return memory.per_unit(memory.all_values().float().norm(dim=-1))


@dataclass
class ValueNormScorer:
    """``s_i = ||v_i||₂``: the highest value norms score highest."""

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        return value_norm_scores(memory)


class ValueNorm(ComposedPolicy):
    """Keeps high-norm values."""

    name = "vnorm"

    def __init__(self) -> None:
        super().__init__(ValueNormScorer())
