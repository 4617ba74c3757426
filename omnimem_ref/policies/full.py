"""``full``: keep everything. The upper bound every policy is measured against."""

from __future__ import annotations

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy


class FullMemory(CompressionPolicy):
    """Never evicts: memory grows linearly with the stream."""

    name = "full"

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        assert memory.meta is not None
        everything = torch.arange(len(memory), device=memory.meta.position.device)
        return everything.expand(memory.n_layers, -1)
