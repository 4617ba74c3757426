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
similarity matrix per layer (soft non-maximum suppression); the two differ only when a token that
was itself discounted would have discounted others, and agree on the duplicates the tests build.

Keys are compared without their rotary position (RoPE is undone exactly, once per token, when the
token is first scored), so two identical patches at different times compare as identical, and
centred on their pool's mean key, so a bias shared by every key does not make everything look
alike.

Every layer holds the same number of rows, so each step runs on all layers at once, as
``(layers, tokens)`` tensors: on a small model the cost of compression is the number of tensor
operations, not their size. Pools (the evictable tokens of one modality, or all of them) are
labelled per row, ``-1`` for protected rows, and filled with one ranking per pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from transformers.models.qwen2.modeling_qwen2 import rotate_half

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
    return keep_per_pool(scores, modality_pools(memory), shares)


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
        if shares is None:  # one pool: every evictable token, the whole free budget
            pools, shares = single_pool(memory), free_slots(memory, budget).unsqueeze(1)
        else:
            pools = modality_pools(memory)
        keys = content_keys(memory, context.backbone).transpose(1, 2).flatten(2)  # (L, N, h*d)
        same_pool = pools.unsqueeze(-1) == pools.unsqueeze(-2)  # (L, N, N)
        centred = keys - pool_means(keys, same_pool)
        meta = memory.meta
        groups = torch.where(meta.modality == VISUAL, meta.patch, -1 - meta.modality)
        adjusted = redundancy_adjusted(scores, centred, groups, self.threshold)
        return keep_per_pool(adjusted, pools, shares, same_pool)


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """(..., n): each entry's place when sorted by descending score (0 = best; ties by index)."""
    order = scores.argsort(dim=-1, descending=True, stable=True)
    places = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, places)


def redundancy_adjusted(
    scores: torch.Tensor, keys: torch.Tensor, groups: torch.Tensor, threshold: float = 0.0
) -> torch.Tensor:
    """(..., n): ``s_j (1 - max_{i ranked above j, same group} d(cos(k_i, k_j)))``.

    ``scores`` (..., n) non-negative; ``keys`` (..., n, dim), already centred; ``groups`` (..., n):
    only keys of the same group discount each other. One n x n similarity matrix per leading index.
    """
    unit = torch.nn.functional.normalize(keys.float(), dim=-1)
    scores = scores.float().clamp_min(0)
    rank = ranks(scores)
    above = rank.unsqueeze(-1) < rank.unsqueeze(-2)  # above[i, j]: i is ranked above j
    same_group = groups.unsqueeze(-1) == groups.unsqueeze(-2)
    cosine = unit @ unit.transpose(-1, -2)
    if threshold:
        cosine = (cosine - threshold) / (1 - threshold)
    duplicate = cosine.clamp(0, 1)  # d(cos(k_i, k_j))
    closest = (duplicate * (above & same_group)).amax(dim=-2)  # max over i above j (>= 0)
    return scores * (1 - closest)


def distinct_top_k(
    scores: torch.Tensor,
    keys: torch.Tensor,
    groups: torch.Tensor,
    k: int,
    threshold: float = 0.0,
) -> torch.Tensor:
    """Indices of ``k`` of the ``n`` candidates of one pool with the best redundancy-adjusted
    scores; ``keys`` (n, dim) are centred on their mean here (what :class:`RedundancyAware` does
    for every pool of every layer at once)."""
    centred = keys.float() - keys.float().mean(0)
    return redundancy_adjusted(scores, centred, groups, threshold).topk(k).indices


def content_keys(memory: KVMemory, backbone: Backbone) -> torch.Tensor:
    """(layers, kv_heads, tokens, head_dim): the keys with their rotary position undone,
    computed once per token and kept with memory."""
    assert memory.meta is not None
    meta = memory.meta

    def compute(start: int) -> torch.Tensor:
        keys = memory.all_keys(start).float()  # (layers, kv_heads, new tokens, d)
        cos, sin = backbone.rotary_emb(keys, meta.position[:, start:])  # one row per layer
        cos, sin = cos.float().unsqueeze(1), sin.float().unsqueeze(1)
        return keys * cos - rotate_half(keys) * sin  # R(-θ) R(θ) k = k

    return memory.per_token("selection.content_keys", compute)


def modality_pools(memory: KVMemory) -> torch.Tensor:
    """(layers, tokens): each evictable row's modality (its pool), ``-1`` for protected rows."""
    assert memory.meta is not None
    return memory.meta.modality.masked_fill(memory.must_keep(), -1)


def single_pool(memory: KVMemory) -> torch.Tensor:
    """(layers, tokens): ``0`` for every evictable row, ``-1`` for protected rows."""
    return -memory.must_keep().long()


def pool_means(keys: torch.Tensor, same_pool: torch.Tensor) -> torch.Tensor:
    """(layers, tokens, dim): the mean key of each row's pool, ``Σ_j same_ij k_j / Σ_j same_ij``."""
    same = same_pool.float()
    return same @ keys.float() / same.sum(dim=-1, keepdim=True)


def keep_per_pool(
    scores: torch.Tensor,
    pools: torch.Tensor,
    shares: torch.Tensor,
    same_pool: torch.Tensor | None = None,
) -> torch.Tensor:
    """(layers, kept) rows, ascending: every protected row (pool ``-1``) plus, per layer ``l``
    and pool ``p``, the ``shares[l, p]`` best-scoring rows of the pool.

    A row's place in its pool is the number of rows of the same pool ranked above it.
    """
    if same_pool is None:
        same_pool = pools.unsqueeze(-1) == pools.unsqueeze(-2)
    rank = ranks(scores)
    ahead = (rank.unsqueeze(-1) < rank.unsqueeze(-2)) & same_pool  # ahead[j, i]: j beats i
    place = ahead.sum(dim=-2)  # within the row's own pool
    kept = (pools < 0) | (place < shares.gather(1, pools.clamp_min(0)))
    counts = kept.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("shares must fill every layer to the same number of rows")
    return kept.nonzero()[:, 1].view(len(kept), -1)
