"""``recent``: attention sinks plus a window of the most recent tokens.

StreamingLLM (Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024)
keeps the first few tokens, which soak up attention, and the most recent ones. Here the sinks are
the prompt prefix (9 tokens, more than the paper's default of 4), which every policy keeps anyway.
"""

from __future__ import annotations

import torch

from omnimem_ref.policies.base import ChunkContext, CompressionPolicy, keep_top
from omnimem_ref.streaming.memory import KVMemory


class RecentWindow(CompressionPolicy):
    """Keeps the prefix and the newest ``budget - prefix`` tokens."""

    name = "recent"

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        assert memory.meta is not None
        return keep_top(memory.meta.position, budget, memory)
