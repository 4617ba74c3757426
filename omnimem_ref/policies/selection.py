"""OmniMem step 3 of 3: choose the tokens that fill each modality's share.

``top_k`` takes the best-scoring tokens of each share. ``RedundancyAware`` first discounts a
candidate whose key nearly repeats that of a better-scored token from the same group (the same
grid cell of the frame for visual tokens: a static background patch repeats frame after frame;
all audio tokens for audio), so one of two duplicates is kept and the slot of the other goes to
something new:

    adjusted_j = s_j · (1 - max_{i ranked above j, same group} d(cos(k_i, k_j))),
    d(c) = clamp((c - τ) / (1 - τ), 0, 1)

then keeps the top ``k`` adjusted scores. ``τ = 0`` is ``docs/design.md``'s ``s_j · (1 - max cos)₊``; a
threshold ``τ`` discounts only keys that are nearly the same (cosine above ``τ``).

The design notes state it greedily: discount by the tokens *already taken*, one pick at a time. That is
``k`` sequential steps per pool and per layer, and it cost three times the model's own prefill on
CPU (``omnimem bench``, previous version). Discounting by every better-scored token instead is one
similarity matrix per layer (soft non-maximum suppression); the two differ only when a token that
was itself discounted would have discounted others, and agree on the duplicates the tests build.

**Linear time.** Only keys of one group discount each other, and the best-ranked members of a
group are the ones that survive, so the fast path (:func:`bounded_redundancy_adjusted`, what
``RedundancyAware`` runs) compares each candidate with at most the ``compare_with`` best-ranked
members of its own group: O(N · compare_with) work and memory, never an N x N matrix. Wherever no
group holds more than ``compare_with + 1`` candidates it equals the all-pairs reference
(:func:`redundancy_adjusted`) exactly; a test checks both that and the agreement beyond it.

Keys are compared without their rotary position (RoPE is undone exactly, once per token, when the
token is first scored), so two identical patches at different times compare as identical, and
centred on their pool's mean key, so a bias shared by every key does not make everything look
alike.

Every unit (a layer, or head-wise a key/value head of a layer) holds the same number of rows, so
each step runs on all units at once, as ``(units, tokens)`` tensors: on a small model the cost of
compression is the number of tensor operations, not their size. Pools (the evictable tokens of one modality, or all of them) are
labelled per row, ``-1`` for protected rows, and filled in one walk down each unit's rows, best
first, counting how many of each pool have been taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from transformers.models.qwen2.modeling_qwen2 import rotate_half

from omnimem_ref.core import VISUAL, rotary_position_ids, rotary_positions
from omnimem_ref.policies.base import free_slots, keep_top
from omnimem_ref.rows import take_rows, unit_batches

if TYPE_CHECKING:
    from omnimem_ref.core import KVMemory
    from omnimem_ref.policies.base import Backbone, ChunkContext


class Selection(Protocol):
    def __call__(
        self,
        scores: torch.Tensor,
        memory: KVMemory,
        context: ChunkContext,
        shares: torch.Tensor | None,
        budget: int,
    ) -> torch.Tensor:
        """(units, budget) kept rows, ascending; ``shares`` (units, modalities) or ``None`` for
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
    ``compare_with``: how many of the best-ranked members of its group each candidate is compared
    with (linear time; see the module docstring); ``None`` compares with every better-ranked
    member (the all-pairs reference, quadratic in the memory size).
    """

    threshold: float = 0.0
    compare_with: int | None = 16

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        if self.compare_with is not None and self.compare_with < 1:
            raise ValueError(f"compare_with must be at least 1 or None, got {self.compare_with}")

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
        keys = flat_content_keys(memory, context.backbone)  # (units, N, dim), RoPE undone
        meta = memory.meta
        groups = torch.where(meta.modality == VISUAL, meta.patch, -1 - meta.modality)
        if self.compare_with is None:  # (units, N, N) similarity matrices
            batches = unit_batches(memory.n_units, len(memory) ** 2, MAX_PAIRS)
        else:  # (units, N, dim) copies of the keys
            batches = unit_batches(memory.n_units, len(memory) * keys.shape[-1])
        kept = [
            self.keep_distinct(scores[g], keys[g], pools[g], groups[g], shares[g]) for g in batches
        ]
        return torch.cat(kept)

    def keep_distinct(
        self,
        scores: torch.Tensor,
        keys: torch.Tensor,
        pools: torch.Tensor,
        groups: torch.Tensor,
        shares: torch.Tensor,
    ) -> torch.Tensor:
        """Kept rows of a batch of units: each pool's share of its best redundancy-adjusted
        scores. (units, tokens) scores, pools and groups, (units, tokens, dim) keys, (units,
        pools) shares."""
        centred = keys - pool_means(keys, pools, shares.shape[1])
        if self.compare_with is None:
            adjusted = redundancy_adjusted(scores, centred, groups, self.threshold)
        else:
            adjusted = bounded_redundancy_adjusted(
                scores, centred, groups, self.threshold, self.compare_with
            )
        return keep_per_pool(adjusted, pools, shares)


# The all-pairs reference's similarity matrices: at most this many entries per batch of units.
MAX_PAIRS = 2**26


def best_first(scores: torch.Tensor) -> torch.Tensor:
    """(..., n) indices that sort ``scores`` descending (ties: the earlier row first)."""
    return scores.argsort(dim=-1, descending=True, stable=True)


def redundancy_adjusted(
    scores: torch.Tensor, keys: torch.Tensor, groups: torch.Tensor, threshold: float = 0.0
) -> torch.Tensor:
    """(..., n): ``s_j (1 - max_{i ranked above j, same group} d(cos(k_i, k_j)))``.

    ``scores`` (..., n) non-negative; ``keys`` (..., n, dim), already centred; ``groups`` (..., n):
    only keys of the same group discount each other. With the candidates sorted best first,
    "ranked above" is "earlier in the list": the strict upper triangle of the similarity matrix.
    """
    scores = scores.float().clamp_min(0)
    order = best_first(scores)
    keys = keys.float().gather(-2, order.unsqueeze(-1).expand_as(keys))
    direction = torch.nn.functional.normalize(keys, dim=-1)
    group = groups.gather(-1, order)
    same_group = group.unsqueeze(-1) == group.unsqueeze(-2)
    cosine = torch.where(same_group, direction @ direction.transpose(-1, -2), 0).triu(diagonal=1)
    nearest = cosine.amax(dim=-2)  # max over the better-ranked i of each j (0 if none)
    closest = ((nearest - threshold) / (1 - threshold)).clamp(0, 1)  # d(max cos) = max d(cos)
    return scores * (1 - torch.empty_like(closest).scatter_(-1, order, closest))


def bounded_redundancy_adjusted(
    scores: torch.Tensor,
    keys: torch.Tensor,
    groups: torch.Tensor,
    threshold: float = 0.0,
    compare_with: int = 16,
) -> torch.Tensor:
    """(units, n): :func:`redundancy_adjusted`, with each candidate compared only with the
    ``compare_with`` best-ranked members of its group (those ranked above it among them).

    How, without an N x N matrix: sort every unit's rows by (group, rank), so each group is a
    run whose first rows are its best; cut each run into blocks of at most ``rows`` members; a
    block's rows are compared with its group's first ``compare_with`` rows in one small matrix
    product. Work and memory: O(units · N · compare_with · dim).
    """
    n_units, n = scores.shape
    scores = scores.float().clamp_min(0)
    ranked = best_first(scores)
    order = ranked.gather(1, groups.gather(1, ranked).argsort(dim=1, stable=True))
    # Flatten the units: one id per (unit, group), non-decreasing along the sorted rows.
    span = int(groups.max() - groups.min()) + 1
    unit = torch.arange(n_units, device=groups.device).unsqueeze(1)
    group_id = (groups.gather(1, order) - groups.min() + unit * span).flatten()
    direction = take_rows(keys.float(), order).flatten(0, 1)  # (units * n, dim), sorted: a copy
    direction /= direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # unit length, in place
    row_index = torch.arange(len(group_id), device=groups.device)
    first = torch.ones_like(group_id, dtype=torch.bool)
    first[1:] = group_id[1:] != group_id[:-1]
    start = torch.where(first, row_index, 0).cummax(dim=0).values  # the group's best row
    place = row_index - start  # rank within the group: 0 for its best
    # Blocks of up to `rows` consecutive members of one group share their group's best rows.
    rows = max(4, min(64, len(group_id) // max(1, int(first.sum()))))
    new_block = first | (place % rows == 0)
    block = new_block.cumsum(dim=0) - 1
    slot = block * rows + place % rows  # each row's place in the padded layout
    dim = direction.shape[-1]
    # Rows past a block's last member are never read back, so they need no zeros.
    padded = direction.new_empty((int(block[-1]) + 1) * rows, dim).index_copy_(0, slot, direction)
    best = start[new_block].unsqueeze(1) + torch.arange(compare_with, device=direction.device)
    columns = direction.index_select(0, best.clamp_max(len(direction) - 1).flatten())
    products = padded.view(-1, rows, dim) @ columns.view(-1, compare_with, dim).transpose(1, 2)
    cosine = products.view(-1, compare_with).index_select(0, slot)  # (units * n, compare_with)
    above = torch.arange(compare_with, device=direction.device) < place.unsqueeze(1)
    nearest = torch.where(above, cosine, 0).amax(dim=1).clamp_min(0)  # 0 if nothing above
    closest = ((nearest - threshold) / (1 - threshold)).clamp(0, 1)
    adjusted = scores.gather(1, order) * (1 - closest.view(n_units, n))
    return torch.empty_like(adjusted).scatter_(1, order, adjusted)


def distinct_top_k(
    scores: torch.Tensor,
    keys: torch.Tensor,
    groups: torch.Tensor,
    k: int,
    threshold: float = 0.0,
) -> torch.Tensor:
    """Indices of ``k`` of the ``n`` candidates of one pool with the best redundancy-adjusted
    scores; ``keys`` (n, dim) are centred on their mean here (what :class:`RedundancyAware` does
    for every pool of every unit at once)."""
    centred = keys.float() - keys.float().mean(0)
    return redundancy_adjusted(scores, centred, groups, threshold).topk(k).indices


def flat_content_keys(memory: KVMemory, backbone: Backbone) -> torch.Tensor:
    """(units, tokens, dim): each row's keys with their rotary position undone (what redundancy
    compares), computed once per token and kept with memory in this layout, so no compression
    copies it. Layer-wise, every key/value head side by side (``dim = kv_heads * head_dim``);
    head-wise, each head's own rows (``dim = head_dim``)."""
    assert memory.meta is not None

    def compute(start: int) -> torch.Tensor:
        keys = memory.all_keys(start).float()  # (layers, kv_heads, new tokens, d)
        # The model's rotary positions of each unit's rows (rows, units, new): one row for plain
        # RoPE, three for TMRoPE; the backbone's own rotary embedding turns them into angles.
        rotary = rotary_positions(memory)[:, :, start:]
        shape = (memory.n_layers, memory.units_per_layer, rotary.shape[-1])
        cos, sin = backbone.rotary_emb(keys, rotary_position_ids(rotary))  # (units, new, d)
        cos = cos.float().view(*shape, -1)
        sin = sin.float().view(*shape, -1)
        unrotated = keys * cos - rotate_half(keys) * sin  # R(-θ) R(θ) k = k
        if memory.head_wise:
            return unrotated  # (layers, kv_heads, new, d): each head its own rows
        return unrotated.transpose(1, 2).flatten(2).unsqueeze(1)  # (units, 1, new, h * d)

    stored = memory.per_token("selection.content_keys", compute)
    return stored.flatten(0, 1)


def content_keys(memory: KVMemory, backbone: Backbone) -> torch.Tensor:
    """(units, heads per unit, tokens, head_dim): :func:`flat_content_keys` head by head (a view)."""
    flat = flat_content_keys(memory, backbone)
    return flat.unflatten(-1, (-1, memory.layer_keys(0).shape[-1])).transpose(1, 2)


def modality_pools(memory: KVMemory) -> torch.Tensor:
    """(units, tokens): each evictable row's modality (its pool), ``-1`` for protected rows."""
    assert memory.meta is not None
    return memory.meta.modality.masked_fill(memory.must_keep(), -1)


def single_pool(memory: KVMemory) -> torch.Tensor:
    """(units, tokens): ``0`` for every evictable row, ``-1`` for protected rows."""
    return -memory.must_keep().long()


def pool_means(keys: torch.Tensor, pools: torch.Tensor, n_pools: int) -> torch.Tensor:
    """(units, tokens, dim): the mean key of each row's pool (zero for protected rows)."""
    member = (pools.unsqueeze(-1) == torch.arange(n_pools, device=pools.device)).float()
    sizes = member.sum(dim=1).clamp_min(1).unsqueeze(-1)  # (units, pools, 1)
    means = member.transpose(1, 2) @ keys.float() / sizes  # (units, pools, dim)
    # Each row's pool mean, by index (zero for protected rows, pool -1): one row copy per token.
    means = torch.cat([means.new_zeros(len(means), 1, means.shape[-1]), means], dim=1)
    return take_rows(means, pools + 1)


def keep_per_pool(scores: torch.Tensor, pools: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """(units, kept) rows, ascending: every protected row (pool ``-1``) plus, per unit ``l``
    and pool ``p``, the ``shares[l, p]`` best-scoring rows of the pool.

    Walking the rows best first, a row's place in its pool is how many of its pool came before.
    """
    order = best_first(scores)
    pool = pools.gather(1, order)
    member = pool.unsqueeze(-1) == torch.arange(shares.shape[1], device=pools.device)
    place = (member.cumsum(dim=1) * member).sum(dim=-1) - 1  # -1 for protected rows
    chosen = (pool < 0) | (place < shares.gather(1, pool.clamp_min(0)))
    kept = torch.zeros_like(chosen).scatter_(1, order, chosen)  # back to memory order
    counts = kept.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("shares must fill every unit to the same number of rows")
    return kept.nonzero()[:, 1].view(len(kept), -1)
