"""OmniMem step 2 of 3: split each unit's budget across modalities before choosing tokens.

A modality-blind top-k lets the modality with the most tokens win: visual tokens outnumber audio
ones about 10:1, so audio starves. An allocation decides how many of a layer's free slots (the
budget minus the protected prompt) each modality gets; selection then fills each share.

Every strategy maps ``counts`` (tokens of each modality that may be evicted), ``mass`` (their
total score) and ``free`` (slots to fill) to integer shares that sum to ``free`` and never exceed
``counts`` (slots a modality cannot use are given to the others).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from omnimem_ref.core import AUDIO, MODALITY_NAMES
from omnimem_ref.policies.base import free_slots

if TYPE_CHECKING:
    from omnimem_ref.core import KVMemory


class Allocation(Protocol):
    def __call__(self, counts: Sequence[int], mass: Sequence[float], free: int) -> list[int]:
        """Per modality: tokens that may be evicted and their score mass; ``free`` slots ->
        integer shares (plain Python numbers: there are only a handful of them)."""
        ...


def largest_remainder(quotas: Sequence[float], total: int) -> list[int]:
    """Round non-negative ``quotas`` summing to ``total`` to integers with the same sum."""
    shares = [math.floor(q) for q in quotas]
    short = total - sum(shares)
    # Round up the largest remainders first; never round up a zero quota.
    remainder = [q - s if q > 0 else -1.0 for q, s in zip(quotas, shares, strict=True)]
    for m in sorted(range(len(quotas)), key=lambda m: remainder[m], reverse=True)[:short]:
        shares[m] += 1
    return shares


def water_fill(weights: Sequence[float], capacity: Sequence[int], total: int) -> list[int]:
    """Integer shares of ``total`` proportional to ``weights``, none above ``capacity``.

    A modality that would get more than it holds is filled to capacity and the excess shared
    among the others, again in proportion to their weights, until nothing is left over (or
    everything is full). Where all open weights are zero, shares follow capacity instead.
    """
    shares = [0] * len(capacity)
    left = min(total, sum(capacity))
    while left > 0:
        room = [c - s for c, s in zip(capacity, shares, strict=True)]
        w = [max(float(x), 0.0) if r > 0 else 0.0 for x, r in zip(weights, room, strict=True)]
        if sum(w) <= 0:
            w = [float(r) for r in room]
        quota = largest_remainder([x / sum(w) * left for x in w], left)
        grant = [min(q, r) for q, r in zip(quota, room, strict=True)]
        shares = [s + g for s, g in zip(shares, grant, strict=True)]
        left -= sum(grant)
    return shares


@dataclass
class Proportional:
    """``B_m ∝ N_m``: what a modality-blind compressor does on average (the baseline behaviour)."""

    def __call__(self, counts: Sequence[int], mass: Sequence[float], free: int) -> list[int]:
        return water_fill(counts, counts, free)  # B_m ∝ N_m


@dataclass
class FixedShare:
    """A fixed share ``rho`` of the free slots for one modality (audio), capped by what exists;
    the rest split over the other modalities by their counts."""

    rho: float = 0.25
    modality: int = AUDIO

    def __call__(self, counts: Sequence[int], mass: Sequence[float], free: int) -> list[int]:
        mine = min(round(self.rho * free), counts[self.modality])
        others = [0 if m == self.modality else c for m, c in enumerate(counts)]
        shares = water_fill(others, others, free - mine)
        # If the other modalities cannot take their part, give the rest back to this one.
        shares[self.modality] = mine + min(free - mine - sum(shares), counts[self.modality] - mine)
        return shares


@dataclass
class ScoreMass:
    """OmniMem's default: ``B_m = floor_m + (B - Σ floor) · M_m / Σ M``.

    ``M_m`` is the total score of modality ``m`` (step 1): a modality gets room in proportion to
    how much output change its tokens carry, not to how many tokens it has. ``floor_m`` is
    ``floor`` of the free slots (capped by what the modality holds) so that no modality present
    in memory is starved when its scores happen to be small.
    """

    floor: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.floor <= 1 / len(MODALITY_NAMES):
            raise ValueError(f"floor must be in [0, 1/{len(MODALITY_NAMES)}] so floors fit")

    def __call__(self, counts: Sequence[int], mass: Sequence[float], free: int) -> list[int]:
        floors = [min(c, int(self.floor * free)) for c in counts]  # floor_m, never above N_m
        # (B - Σ floor) · M_m / Σ M, capped at N_m - floor_m, excess redistributed
        room = [c - f for c, f in zip(counts, floors, strict=True)]
        rest = water_fill(mass, room, free - sum(floors))
        return [f + r for f, r in zip(floors, rest, strict=True)]


def allocate(
    allocation: Allocation, memory: KVMemory, scores: torch.Tensor, budget: int
) -> torch.Tensor:
    """(units, modalities) shares of each unit's free slots among its evictable tokens."""
    assert memory.meta is not None
    evictable = ~memory.must_keep()
    one_hot = torch.nn.functional.one_hot(memory.meta.modality, len(MODALITY_NAMES)).bool()
    in_modality = one_hot & evictable.unsqueeze(-1)  # (units, tokens, modalities)
    counts = in_modality.sum(dim=1)  # N_m per layer
    mass = (in_modality * scores.float().clamp_min(0).unsqueeze(-1)).sum(dim=1)  # M_m per layer
    free = free_slots(memory, budget)
    return torch.tensor(
        [
            allocation(c, m, f)
            for c, m, f in zip(counts.tolist(), mass.tolist(), free.tolist(), strict=True)
        ],
        device=scores.device,
    )
