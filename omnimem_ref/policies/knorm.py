"""``knorm``: keep the tokens whose keys have the *lowest* L2 norm.

Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression" (EMNLP
2024): a low key norm goes with high attention during decoding, so the key norm alone, with no
query, ranks tokens. Score ``s_i = -||k_i||₂`` (higher keeps, so the lowest norms stay); nothing
else to set. The paper's language-modelling runs leave the first two layers uncompressed; here
every layer must hold the budget (``docs/design.md`` §4), so every layer is compressed, as
kvpress's ``KnormPress`` does. Per layer: the norm is averaged over key/value heads (the paper and
kvpress choose per head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext
from omnimem_ref.policies.composed import ComposedPolicy


def key_norm_scores(memory: KVMemory) -> torch.Tensor:
    """(units, tokens): ``-mean_g ||k_i^g||₂`` over the key/value heads ``g`` of each unit (RoPE
    keeps the norm); head-wise, each head's own norm."""
    return -memory.per_unit(memory.all_keys().float().norm(dim=-1))


@dataclass
class KeyNormScorer:
    """``s_i = -||k_i||₂``: the lowest key norms score highest."""

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        return key_norm_scores(memory)


class KeyNorm(ComposedPolicy):
    """Keeps low-norm keys."""

    name = "knorm"

    def __init__(self) -> None:
        super().__init__(KeyNormScorer())
