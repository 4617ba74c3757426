"""Attention of proxy queries over one layer's memory, exactly as the layer would compute it.

Grouped-query attention (Qwen2.5: several query heads share one key/value head) is handled by
repeating each key/value head for its group; scores are scaled by ``1/sqrt(head_dim)``; a query
sees a key only if the key's original position is not after its own, which is the causal mask
inside a chunk and "all of memory" for anything older. In a head-wise memory each key/value head
holds its own tokens, so key positions are given per unit: ``(units_per_layer, n)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from omnimem_ref.core import KVMemory
    from omnimem_ref.policies.queries import ProxyQueries


def repeat_kv_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(..., kv_heads, n, d) -> (..., n_heads, n, d): each key/value head repeated for its query
    group."""
    return x.repeat_interleave(n_heads // x.shape[-3], dim=-3)


def attention_logits(
    queries: torch.Tensor,
    query_positions: torch.Tensor,
    keys: torch.Tensor,
    key_positions: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(heads, q, n): ``q·k / sqrt(d)``, ``-inf`` where a key comes after the query.

    ``queries`` (heads, q, d); ``keys`` (kv_heads, n, d); ``key_positions`` (units, n), one row per
    unit of the layer (one row layer-wise; one per key/value head head-wise), as
    :func:`visible_keys` gives them.
    """
    n_heads, _, head_dim = queries.shape
    keys = repeat_kv_heads(keys.to(dtype), n_heads)
    logits = queries.to(dtype) @ keys.transpose(1, 2) / math.sqrt(head_dim)  # q·k / sqrt(d)
    # (units, n) -> (heads, 1, n): each query head sees its own unit's rows
    per_head = key_positions.repeat_interleave(n_heads // len(key_positions), dim=0).unsqueeze(1)
    visible = per_head <= query_positions.unsqueeze(1)  # causal by position: (heads, q, n)
    return logits.masked_fill(~visible, float("-inf"))


def attend(
    queries: torch.Tensor,
    query_positions: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    key_positions: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention weights (heads, q, n) and head outputs (heads, q, d), computed in ``dtype``
    (float32 everywhere in the package; tests pass float64 for a reference)."""
    logits = attention_logits(queries, query_positions, keys, key_positions, dtype)
    weights = logits.softmax(dim=-1)
    values = repeat_kv_heads(values.to(dtype), queries.shape[0])
    return weights, weights @ values  # o_q = Σ_j a_qj v_j


def visible_keys(
    memory: KVMemory, layer: int, proxy: ProxyQueries
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys, values (kv_heads, n, d, float32) and positions (units_per_layer, n) that ``proxy``'s
    queries see in ``layer``: memory's rows first, then any transient tokens the proxy carries."""
    keys, values = memory.layer_keys(layer).float(), memory.layer_values(layer).float()
    positions = memory.layer_positions(layer)
    if proxy.extra_keys is not None:
        assert proxy.extra_values is not None and proxy.extra_positions is not None
        keys = torch.cat([keys, proxy.extra_keys], dim=1)
        values = torch.cat([values, proxy.extra_values], dim=1)
        extra = proxy.extra_positions.expand(len(positions), -1)  # every unit sees them
        positions = torch.cat([positions, extra], dim=1)
    return keys, values, positions


def proxy_attention(
    memory: KVMemory, layer: int, proxy: ProxyQueries, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of ``proxy``'s queries on each memory row of ``layer`` (heads, q, tokens), and their
    outputs (heads, q, d), which also include any transient tokens the proxy carries."""
    keys, values, positions = visible_keys(memory, layer, proxy)
    weights, output = attend(proxy.queries, proxy.positions, keys, values, positions, dtype)
    return weights[..., : len(memory)], output


def unit_mean(weights: torch.Tensor, units: int) -> torch.Tensor:
    """(heads, q, n) -> (units, n): averaged over queries and over the heads of each unit (every
    head layer-wise; a key/value head's query group head-wise, as kvpress averages GQA groups)."""
    if units == 1:
        return weights.mean(dim=(0, 1)).unsqueeze(0)
    return weights.unflatten(0, (units, -1)).mean(dim=(1, 2))


def mean_attention(memory: KVMemory, proxies: list[ProxyQueries]) -> torch.Tensor:
    """(units, tokens): attention each row gets, averaged over proxy queries and heads."""
    return torch.cat(
        [
            unit_mean(proxy_attention(memory, layer, proxy)[0], memory.units_per_layer)
            for layer, proxy in enumerate(proxies)
        ]
    )
