"""``knorm``: keep the tokens whose keys have the *lowest* L2 norm.

Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression" (EMNLP
2024): a low key norm goes with high attention during decoding, so the key norm alone, with no
query, ranks tokens. Published defaults: score ``-||k_i||₂``, nothing else to set. The paper's
language-modelling runs leave the first two layers uncompressed; here every layer must hold the
budget (DESIGN.md §4), so every layer is compressed, as kvpress's ``KnormPress`` does.
Per layer: the norm is averaged over key/value heads (the paper and kvpress choose per head).
"""

from __future__ import annotations

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy, keep_top


def key_norm_scores(memory: KVMemory) -> torch.Tensor:
    """(layers, tokens): ``-||k_i||₂`` averaged over key/value heads (RoPE keeps the norm)."""
    return -torch.stack(
        [memory.layer_keys(layer).float().norm(dim=-1).mean(0) for layer in range(memory.n_layers)]
    )


class KeyNorm(CompressionPolicy):
    """Keeps low-norm keys."""

    name = "knorm"

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        return keep_top(key_norm_scores(memory), budget, memory)
