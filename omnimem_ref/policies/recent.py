"""``recent``: attention sinks plus a window of the most recent tokens.

StreamingLLM (Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024)
keeps the first few tokens, which soak up attention, and the most recent ones. Published default:
4 sink tokens. In a TinyOmni stream the prompt prefix (9 tokens) is kept by every policy anyway and
already contains them; on a plain text decoder's cache, where nothing is protected, the first
``sinks`` tokens are kept explicitly.
"""

from __future__ import annotations

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy, keep_top


class RecentWindow(CompressionPolicy):
    """Keeps the sinks (and the prefix) and the newest tokens that fit."""

    name = "recent"

    def __init__(self, sinks: int = 4) -> None:
        self.sinks = sinks

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        assert memory.meta is not None
        position = memory.meta.position.float()
        sink = position < self.sinks
        return keep_top(position.masked_fill(sink, position.max() + 1), budget, memory)
