"""OmniMem stage 3: choose the tokens that fill each modality's share.

``top_k`` takes the best-scoring tokens of each share. ``RedundancyAware`` first discounts a
candidate whose key nearly repeats that of a better-scored token from the same group (the same
grid cell of the frame for visual tokens: a static background patch repeats frame after frame;
all audio tokens for audio), so one of two duplicates is kept and the slot of the other goes to
something new:

    adjusted_j = s_j · (1 - max_{i ranked above j, same group} d(cos(k_i, k_j))),
    d(c) = clamp((c - τ) / (1 - τ), 0, 1)

then keeps the top ``k`` adjusted scores. ``τ = 0`` is DESIGN.md's ``s_j · (1 - max cos)₊``; a
threshold ``τ`` discounts only keys that are nearly the same (cosine above ``τ``).

DESIGN.md states it greedily: discount by the tokens *already taken*, one pick at a time. That is
``k`` sequential steps per pool and per layer, and it cost three times the model's own prefill on
CPU (``omnimem bench``, previous version). Discounting by every better-scored token instead is one
similarity matrix per pool (soft non-maximum suppression); the two differ only when a token that
was itself discounted would have discounted others, and agree on the duplicates the tests build.

Keys are compared without their rotary position (RoPE is undone exactly), so two identical patches
at different times compare as identical, and centred on their modality's mean key, so a bias
shared by every key does not make everything look alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from omnimem_ref.model.modeling import VISUAL
from omnimem_ref.policies.base import free_slots, keep_top

if TYPE_CHECKING:
    from omnimem_ref.policies.base import Backbone, ChunkContext
    from omnimem_ref.streaming.memory import KVMemory


class Selection(Protocol):
    def __call__(
        self,
        scores: torch.Tensor,
        memory: KVMemory,
        context: ChunkContext,
        shares: torch.Tensor | None,
        budget: int,
    ) -> torch.Tensor:
        """(layers, budget) kept rows, ascending; ``shares`` (layers, modalities) or ``None`` for
        one pool of all evictable tokens."""
        ...


def top_k(
    scores: torch.Tensor,
    memory: KVMemory,
    context: ChunkContext,
    shares: torch.Tensor | None,
    budget: int,
) -> torch.Tensor:
    """The best-scoring tokens of each modality's share (or of all evictable tokens)."""
    if shares is None:
        return keep_top(scores, budget, memory)
    return _per_pool(scores, memory, shares, lambda pool, s, k, layer: pool[s.topk(k).indices])


@dataclass
class RedundancyAware:
    """Top-k by score after discounting keys that repeat a better-scored key of their group.

    ``threshold``: the cosine ``τ`` below which keys do not count as duplicates at all.
    """

    threshold: float = 0.0

    def __call__(
        self,
        scores: torch.Tensor,
        memory: KVMemory,
        context: ChunkContext,
        shares: torch.Tensor | None,
        budget: int,
    ) -> torch.Tensor:
        assert memory.meta is not None
        meta = memory.meta
        groups = torch.where(meta.modality == VISUAL, meta.patch, -1 - meta.modality)
        keys = [
            content_keys(memory, context.backbone, layer).transpose(0, 1).flatten(1)
            for layer in range(memory.n_layers)
        ]

        def pick(pool: torch.Tensor, s: torch.Tensor, k: int, layer: int) -> torch.Tensor:
            chosen = distinct_top_k(s, keys[layer][pool], groups[layer][pool], k, self.threshold)
            return pool[chosen]

        if shares is None:  # one pool: every evictable token, the whole free budget
            shares = free_slots(memory, budget).unsqueeze(1)
            return _per_pool(scores, memory, shares, pick, by_modality=False)
        return _per_pool(scores, memory, shares, pick)


def distinct_top_k(
    scores: torch.Tensor,
    keys: torch.Tensor,
    groups: torch.Tensor,
    k: int,
    threshold: float = 0.0,
) -> torch.Tensor:
    """Indices of ``k`` of the ``n`` candidates with the best redundancy-adjusted scores.

    ``scores`` (n,) non-negative; ``keys`` (n, dim), ``groups`` (n,): only keys of the same group
    discount each other. One n x n similarity matrix (n is one pool of one layer's memory).
    """
    unit = torch.nn.functional.normalize(keys.float() - keys.float().mean(0), dim=-1)
    scores = scores.float().clamp_min(0)
    rank = torch.empty_like(groups)
    rank[scores.argsort(descending=True, stable=True)] = torch.arange(len(scores))
    above = rank.unsqueeze(1) < rank.unsqueeze(0)  # above[i, j]: i is ranked above j
    same_group = groups.unsqueeze(1) == groups.unsqueeze(0)
    duplicate = ((unit @ unit.T - threshold) / (1 - threshold)).clamp(0, 1)  # d(cos(k_i, k_j))
    closest = (duplicate * (above & same_group)).amax(dim=0)  # max over i above j (>= 0)
    adjusted = scores * (1 - closest)
    return adjusted.topk(k).indices


def content_keys(memory: KVMemory, backbone: Backbone, layer: int) -> torch.Tensor:
    """(kv_heads, tokens, head_dim): the layer's keys with their rotary position undone."""
    assert memory.meta is not None
    keys = memory.layer_keys(layer).float().unsqueeze(0)  # (1, kv_heads, tokens, d)
    positions = memory.meta.position[layer].unsqueeze(0)
    cos, sin = backbone.rotary_emb(keys, positions)
    unrotated, _ = apply_rotary_pos_emb(keys, keys, cos.float(), -sin.float())  # R(-θ) R(θ) k = k
    return unrotated[0]


Pick = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]


def _per_pool(
    scores: torch.Tensor,
    memory: KVMemory,
    shares: torch.Tensor,
    pick: Pick,
    by_modality: bool = True,
) -> torch.Tensor:
    """Protected rows plus, per layer and pool, ``pick(pool_rows, pool_scores, k, layer)``.

    A pool is the evictable tokens of one modality (``shares`` column ``m``), or all of them
    (``by_modality=False``, one column)."""
    assert memory.meta is not None
    protected = memory.must_keep()
    kept = []
    for layer in range(memory.n_layers):
        rows = [protected[layer].nonzero().flatten()]
        for column in range(shares.shape[1]):
            in_pool = ~protected[layer]
            if by_modality:
                in_pool &= memory.meta.modality[layer] == column
            pool = in_pool.nonzero().flatten()
            k = int(shares[layer, column])
            if k > 0:
                rows.append(pick(pool, scores[layer, pool], k, layer))
        kept.append(torch.cat(rows).sort().values)
    return torch.stack(kept)
