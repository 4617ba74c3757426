"""OmniMem stage 1: split each layer's budget across modalities before choosing tokens.

A modality-blind top-k lets the modality with the most tokens win: visual tokens outnumber audio
ones about 10:1, so audio starves. An allocation decides how many of a layer's free slots (the
budget minus the protected prompt) each modality gets; selection then fills each share.

Every strategy maps ``counts`` (tokens of each modality that may be evicted), ``mass`` (their
total score) and ``free`` (slots to fill) to integer shares that sum to ``free`` and never exceed
``counts`` (slots a modality cannot use are given to the others).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from omnimem_ref.model.modeling import AUDIO, MODALITY_NAMES
from omnimem_ref.policies.base import free_slots

if TYPE_CHECKING:
    from omnimem_ref.streaming.memory import KVMemory


class Allocation(Protocol):
    def __call__(self, counts: torch.Tensor, mass: torch.Tensor, free: int) -> torch.Tensor:
        """(modalities,) counts and score mass, ``free`` slots -> (modalities,) integer shares."""
        ...


def largest_remainder(quotas: torch.Tensor, total: int) -> torch.Tensor:
    """Round non-negative ``quotas`` summing to ``total`` to integers with the same sum."""
    shares = quotas.floor().long()
    short = total - int(shares.sum())
    if short > 0:
        remainder = torch.where(quotas > 0, quotas - shares, -1.0)  # never round up a zero quota
        shares[remainder.topk(short).indices] += 1
    return shares


def water_fill(weights: torch.Tensor, capacity: torch.Tensor, total: int) -> torch.Tensor:
    """Integer shares of ``total`` proportional to ``weights``, none above ``capacity``.

    A modality that would get more than it holds is filled to capacity and the excess shared
    among the others, again in proportion to their weights, until nothing is left over (or
    everything is full). Where all open weights are zero, shares follow capacity instead.
    """
    shares = torch.zeros_like(capacity)
    left = min(total, int(capacity.sum()))
    while left > 0:
        open_ = shares < capacity
        w = torch.where(open_, weights.double().clamp_min(0), 0.0)
        if w.sum() <= 0:
            w = torch.where(open_, (capacity - shares).double(), 0.0)
        quota = largest_remainder(w / w.sum() * left, left)
        grant = torch.minimum(quota, capacity - shares)
        shares += grant
        left -= int(grant.sum())
    return shares


@dataclass
class Proportional:
    """``B_m ∝ N_m``: what a modality-blind compressor does on average (the baseline behaviour)."""

    def __call__(self, counts: torch.Tensor, mass: torch.Tensor, free: int) -> torch.Tensor:
        return water_fill(counts.double(), counts, free)  # B_m ∝ N_m


@dataclass
class FixedShare:
    """A fixed share ``rho`` of the free slots for one modality (audio), capped by what exists;
    the rest split over the other modalities by their counts."""

    rho: float = 0.25
    modality: int = AUDIO

    def __call__(self, counts: torch.Tensor, mass: torch.Tensor, free: int) -> torch.Tensor:
        shares = torch.zeros_like(counts)
        shares[self.modality] = min(round(self.rho * free), int(counts[self.modality]))
        others = counts.clone()
        others[self.modality] = 0
        shares += water_fill(others.double(), others, free - int(shares.sum()))
        # If the other modalities cannot take their part, give the rest back to this one.
        room = int(counts[self.modality] - shares[self.modality])
        shares[self.modality] += min(free - int(shares.sum()), room)
        return shares


@dataclass
class ScoreMass:
    """OmniMem's default: ``B_m = floor_m + (B - Σ floor) · M_m / Σ M``.

    ``M_m`` is the total score of modality ``m`` (stage 2): a modality gets room in proportion to
    how much output change its tokens carry, not to how many tokens it has. ``floor_m`` is
    ``floor`` of the free slots (capped by what the modality holds) so that no modality present
    in memory is starved when its scores happen to be small.
    """

    floor: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.floor <= 1 / len(MODALITY_NAMES):
            raise ValueError(f"floor must be in [0, 1/{len(MODALITY_NAMES)}] so floors fit")

    def __call__(self, counts: torch.Tensor, mass: torch.Tensor, free: int) -> torch.Tensor:
        floors = torch.clamp(counts, max=int(self.floor * free))  # floor_m, never above N_m
        # (B - Σ floor) · M_m / Σ M, capped at N_m - floor_m, excess redistributed
        return floors + water_fill(mass, counts - floors, free - int(floors.sum()))


def allocate(
    allocation: Allocation, memory: KVMemory, scores: torch.Tensor, budget: int
) -> torch.Tensor:
    """(layers, modalities) shares of each layer's free slots among its evictable tokens."""
    assert memory.meta is not None
    evictable = ~memory.must_keep()
    shares = []
    for layer, free in enumerate(free_slots(memory, budget).tolist()):
        modality = memory.meta.modality[layer]
        counts = torch.stack(
            [((modality == m) & evictable[layer]).sum() for m in range(len(MODALITY_NAMES))]
        )
        mass = torch.stack(
            [
                scores[layer][(modality == m) & evictable[layer]].double().clamp_min(0).sum()
                for m in range(len(MODALITY_NAMES))
            ]
        )
        shares.append(allocation(counts, mass, free))
    return torch.stack(shares)
