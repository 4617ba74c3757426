"""``full``: keep everything. The upper bound every policy is measured against.

Not a scorer: it never evicts, so it cannot compress. Its :meth:`FullMemory.select` honours the
policy contract only where that is possible: asked for at least as many rows as memory holds, it
returns all of them; asked for fewer, it raises :class:`FullMemoryBudgetError` rather than
silently keeping more than the budget. Run it with no budget (``StreamingSession(..., budget=None)``,
as the benchmark does), so it is never asked.
"""

from __future__ import annotations

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.errors import OmniMemError
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy


class FullMemoryBudgetError(OmniMemError, ValueError):
    """``full`` was asked to keep fewer rows than memory holds."""


class FullMemory(CompressionPolicy):
    """Never evicts: memory grows linearly with the stream."""

    name = "full"

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        if budget < len(memory):
            raise FullMemoryBudgetError(
                f"The full policy keeps every token, so it cannot keep memory to {budget} tokens "
                f"per layer (it holds {len(memory)}); run it with no budget."
            )
        assert memory.meta is not None
        everything = torch.arange(len(memory), device=memory.meta.position.device)
        return everything.expand(memory.n_units, -1)
