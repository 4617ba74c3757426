"""``vnorm``: keep the tokens whose values have the highest L2 norm (VaN).

A value's norm bounds how much the token can add to any head's output, whatever the query; it
is InfiniPot-V's "Value Norm" (VaN) importance used on its own (Kim et al., 2025), with no
parameters. Per layer: averaged over key/value heads.
"""

from __future__ import annotations

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy, keep_top


def value_norm_scores(memory: KVMemory) -> torch.Tensor:
    """(layers, tokens): ``||v_i||₂`` averaged over key/value heads."""
    return torch.stack(
        [
            memory.layer_values(layer).float().norm(dim=-1).mean(0)
            for layer in range(memory.n_layers)
        ]
    )


class ValueNorm(CompressionPolicy):
    """Keeps high-norm values."""

    name = "vnorm"

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        return keep_top(value_norm_scores(memory), budget, memory)
