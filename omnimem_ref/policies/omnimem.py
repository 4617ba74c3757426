"""``omnimem`` and its ablations: allocation by score mass, perturbation scores, distinct keys.

OmniMem as this project formalises it (DESIGN.md §2; the paper's exact formulas are not at hand):

1. stage 2 scores every cached token by the leave-one-out change of the layer's output
   (:mod:`~omnimem_ref.policies.perturbation`);
2. stage 1 splits each layer's free slots across modalities by score mass, with a floor
   (:class:`~omnimem_ref.policies.allocation.ScoreMass`);
3. stage 3 fills each share by score, discounting keys that repeat a better-scored one
   (:class:`~omnimem_ref.policies.selection.RedundancyAware`).

The ablations each remove one stage: ``omnimem-no-alloc`` (one global pool), ``omnimem-no-perturb``
(attention instead of output change), ``omnimem-no-redundancy`` (plain top-k in each share).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.allocation import Allocation, ScoreMass
from omnimem_ref.policies.attention import mean_attention
from omnimem_ref.policies.base import ChunkContext
from omnimem_ref.policies.composed import ComposedPolicy
from omnimem_ref.policies.perturbation import PerturbationScorer
from omnimem_ref.policies.queries import GENERIC_QUESTION, chunk_tail, generic_prompt
from omnimem_ref.policies.selection import RedundancyAware, Selection, top_k

DEFAULT_PROXY = "uniform"


@dataclass
class AttentionScorer:
    """Mean attention of proxy queries (the ``omnimem-no-perturb`` ablation).

    Attention needs real queries: under ``"uniform"`` every token would get ``1/N``, so that proxy
    falls back to the chunk tail (SnapKV's queries, without its pooling or protected window).
    """

    proxy: str = DEFAULT_PROXY
    window: int = 32
    question: str = GENERIC_QUESTION

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        if self.proxy == "prompt":
            return mean_attention(memory, generic_prompt(memory, context, self.question))
        return mean_attention(memory, chunk_tail(context, self.window))


class OmniMem(ComposedPolicy):
    """Score-mass allocation + perturbation scores + redundancy-aware selection."""

    name = "omnimem"

    def __init__(
        self,
        proxy: str = DEFAULT_PROXY,
        allocation: Allocation | None = None,
        selection: Selection | None = None,
    ) -> None:
        super().__init__(
            PerturbationScorer(proxy),
            allocation if allocation is not None else ScoreMass(),
            selection if selection is not None else RedundancyAware(),
        )


class OmniMemNoAlloc(ComposedPolicy):
    """Ablation: one global pool instead of per-modality shares."""

    name = "omnimem-no-alloc"

    def __init__(self, proxy: str = DEFAULT_PROXY) -> None:
        super().__init__(PerturbationScorer(proxy), None, RedundancyAware())


class OmniMemNoPerturb(ComposedPolicy):
    """Ablation: attention-only scores (allocation and selection unchanged)."""

    name = "omnimem-no-perturb"

    def __init__(self, proxy: str = DEFAULT_PROXY) -> None:
        super().__init__(AttentionScorer(proxy), ScoreMass(), RedundancyAware())


class OmniMemNoRedundancy(ComposedPolicy):
    """Ablation: plain top-k inside each share."""

    name = "omnimem-no-redundancy"

    def __init__(self, proxy: str = DEFAULT_PROXY) -> None:
        super().__init__(PerturbationScorer(proxy), ScoreMass(), top_k)
