"""Head-wise selection: any policy, choosing its tokens per key/value head instead of per layer.

SnapKV, CriticalKV, InfiniPot-V and kvpress pick a separate set of tokens for every key/value
head: a head that tracks colours and a head that tracks sounds need not agree on what to keep
(two heads of one layer of a small Llama agree on a tenth to a seventh of their picks). This
package's policies pick one set per layer by default (the heads' scores averaged), which is
simpler to draw and to fine-tune against. ``PerHead(policy)`` runs the same policy head-wise:

- the session builds its memory with one *unit* per key/value head (``KVMemory(layers,
  units_per_layer=kv_heads)``); each head keeps ``budget`` rows, so the cache still has one length
  per layer and the masks and positions work unchanged;
- every scorer then returns one row of scores per head, averaging only over the query heads of
  that head's group (attention, value and key norms), and OmniMem's score becomes the change of
  the layer's output when the row leaves *that head*, ``||Σ_{h in group g} W_O^h Δ^h||``;
- allocation and selection run per unit exactly as they run per layer.

Head-wise memory cannot be replayed as one mask per layer, so budget-aware fine-tuning refuses it.
"""

from __future__ import annotations

import torch

from omnimem_ref.core import ChunkContext, KVMemory
from omnimem_ref.policies.base import CompressionPolicy

SUFFIX = "-per-head"


class PerHead(CompressionPolicy):
    """``policy``, selecting per key/value head; named ``"<policy>-per-head"``."""

    head_wise = True

    def __init__(self, policy: CompressionPolicy) -> None:
        self.policy = policy
        self.name = policy.name + SUFFIX

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        if not memory.head_wise:
            raise ValueError(
                f"{self.name} needs a head-wise memory (KVMemory(..., units_per_layer=kv_heads));"
                " StreamingSession builds one for it"
            )
        return self.policy.select(memory, budget, context)

    def __repr__(self) -> str:
        return f"PerHead({self.policy!r})"
