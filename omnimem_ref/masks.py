"""Explicit 4D attention masks.

After eviction, the cache has gaps, so neither transformers' implicit causal mask nor implicit
positions can be trusted: the caller passes both (docs/design.md §4). A mask here starts as
booleans, ``visible[query, key]``, and is handed to transformers as a ``(batch, 1, queries,
keys)`` tensor, which it passes to the attention function untouched. SDPA takes booleans
directly (True = may attend; several times faster on CPU than an additive float mask); the eager
implementation adds the mask to the scores, so it gets ``0`` / dtype-minimum floats instead.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig


def attention_mask(
    visible: torch.Tensor, config: PretrainedConfig, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(queries, keys), (batch, queries, keys) booleans -> the 4D mask ``config``'s attention wants."""
    if visible.dim() == 2:
        visible = visible.unsqueeze(0)
    visible = visible.unsqueeze(1)
    if getattr(config, "_attn_implementation", "sdpa") != "eager":
        return visible
    mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return mask.masked_fill_(~visible, torch.finfo(dtype).min)


def chunk_visibility(
    n_memory: int, n_chunk: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """A chunk sees all of memory, and itself causally: (n_chunk, n_memory + n_chunk) booleans."""
    memory = torch.ones(n_chunk, n_memory, dtype=torch.bool, device=device)
    causal = torch.ones(n_chunk, n_chunk, dtype=torch.bool, device=device).tril()
    return torch.cat([memory, causal], dim=1)
