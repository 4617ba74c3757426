"""``recent``: attention sinks plus a window of the most recent tokens.

StreamingLLM (Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024)
keeps the first few tokens, which soak up attention, and the most recent ones. Published default:
4 sink tokens. Score ``s_i = position_i`` (newer keeps), with the sinks (``position_i < sinks``)
force-kept. In a TinyOmni stream the prompt prefix (9 tokens) is kept by every policy anyway and
already contains them; on a plain text decoder's cache, where nothing is protected, the first
``sinks`` tokens are what the force-keep holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.base import ChunkContext, force_keep
from omnimem_ref.policies.composed import ComposedPolicy


@dataclass
class RecencyScorer:
    """``s_i = position_i``, with the first ``sinks`` positions force-kept."""

    sinks: int = 4

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        assert memory.meta is not None
        position = memory.meta.position
        return force_keep(position.float(), position < self.sinks)


class RecentWindow(ComposedPolicy):
    """Keeps the sinks (and the prefix) and the newest tokens that fit."""

    name = "recent"

    def __init__(self, sinks: int = 4) -> None:
        super().__init__(RecencyScorer(sinks))
