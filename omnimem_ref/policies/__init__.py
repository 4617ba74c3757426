"""Compression policies, one per module, made from a name with :func:`make_policy`.

Each registered name maps to a factory with that policy's published (or, for OmniMem, measured)
defaults. To build a variant, compose one in code (see :mod:`~omnimem_ref.policies.composed`)::

    from omnimem_ref.policies import ComposedPolicy, FixedShare, PerturbationScorer, top_k
    policy = ComposedPolicy(PerturbationScorer("tail"), FixedShare(rho=0.25), top_k)

Every baseline is a scorer followed by ``keep_top`` (``ComposedPolicy(scorer)``), e.g.
``ComposedPolicy(TwoStage(SnapKVScorer(), ValueNormScorer()))`` is CriticalKV's two stages with
the plain value norm as the second score.
"""

from __future__ import annotations

from collections.abc import Callable

from omnimem_ref.errors import OmniMemError
from omnimem_ref.policies.allocation import FixedShare, Proportional, ScoreMass
from omnimem_ref.policies.base import (
    BudgetAwareScorer,
    ChunkContext,
    CompressionPolicy,
    Scorer,
    force_keep,
    free_slots,
    keep_top,
)
from omnimem_ref.policies.composed import ComposedPolicy
from omnimem_ref.policies.criticalkv import CriticalKV, ProjectedValueNorm
from omnimem_ref.policies.full import FullMemory
from omnimem_ref.policies.infinipot_v import InfiniPotV, InfiniPotVScorer
from omnimem_ref.policies.knorm import KeyNorm, KeyNormScorer
from omnimem_ref.policies.omnimem import (
    AttentionScorer,
    OmniMem,
    OmniMemNoAlloc,
    OmniMemNoPerturb,
    OmniMemNoRedundancy,
    OmniMemTail,
    OmniMemValueNorm,
)
from omnimem_ref.policies.per_head import PerHead
from omnimem_ref.policies.perturbation import PerturbationScorer
from omnimem_ref.policies.random_choice import RandomEviction, RandomScorer
from omnimem_ref.policies.recent import RecencyScorer, RecentWindow
from omnimem_ref.policies.selection import RedundancyAware, top_k
from omnimem_ref.policies.snapkv import SnapKV, SnapKVScorer
from omnimem_ref.policies.streammem import PromptAttentionScorer, StreamMem
from omnimem_ref.policies.text import compress_text_cache
from omnimem_ref.policies.two_stage import TwoStage
from omnimem_ref.policies.vnorm import ValueNorm, ValueNormScorer

LAYER_WISE: dict[str, Callable[[], CompressionPolicy]] = {
    cls.name: cls
    for cls in (
        FullMemory,
        RecentWindow,
        RandomEviction,
        SnapKV,
        KeyNorm,
        ValueNorm,
        CriticalKV,
        StreamMem,
        InfiniPotV,
        OmniMem,
        OmniMemNoAlloc,
        OmniMemNoRedundancy,
        OmniMemValueNorm,
        OmniMemTail,
        OmniMemNoPerturb,
    )
}


# The same policies choosing per key/value head, as SnapKV, CriticalKV, InfiniPot-V and kvpress
# do (see `per_head`): every scored policy, OmniMem included. (recent, random and full choose by
# position or by chance, the same for every head; the ablations stay layer-wise.)
def _per_head(factory: Callable[[], CompressionPolicy]) -> Callable[[], CompressionPolicy]:
    return lambda: PerHead(factory())


HEAD_WISE: dict[str, Callable[[], CompressionPolicy]] = {
    cls.name + "-per-head": _per_head(cls)
    for cls in (SnapKV, KeyNorm, ValueNorm, CriticalKV, StreamMem, InfiniPotV, OmniMem)
}

POLICIES: dict[str, Callable[[], CompressionPolicy]] = {**LAYER_WISE, **HEAD_WISE}


def make_policy(name: str) -> CompressionPolicy:
    """The policy called ``name``; an unknown name lists the valid ones."""
    if name not in POLICIES:
        raise OmniMemError(f"Unknown policy {name!r}; choose one of: {', '.join(POLICIES)}.")
    return POLICIES[name]()


def parse_policies(text: str | None) -> list[str]:
    """``"recent,omnimem"`` -> names, checked against the registry; ``None``: every policy."""
    if text is None:
        return list(POLICIES)
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise OmniMemError(
            "No policy given; pass --policies as a comma-separated list such as recent,omnimem."
        )
    for name in names:
        make_policy(name)  # an unknown name lists the valid ones
    return names


__all__ = [
    "POLICIES",
    "AttentionScorer",
    "BudgetAwareScorer",
    "ChunkContext",
    "ComposedPolicy",
    "CompressionPolicy",
    "FixedShare",
    "InfiniPotVScorer",
    "KeyNormScorer",
    "OmniMem",
    "PerHead",
    "PerturbationScorer",
    "ProjectedValueNorm",
    "PromptAttentionScorer",
    "Proportional",
    "RandomScorer",
    "RecencyScorer",
    "RedundancyAware",
    "ScoreMass",
    "Scorer",
    "SnapKVScorer",
    "TwoStage",
    "ValueNormScorer",
    "compress_text_cache",
    "force_keep",
    "free_slots",
    "keep_top",
    "make_policy",
    "parse_policies",
    "top_k",
]
