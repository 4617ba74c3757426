"""``omnimem`` and its ablations, each of which changes exactly one thing.

OmniMem as this project formalises it (``docs/design.md`` §2; the paper's exact formulas are not
at hand), in the order a compression runs:

1. **score** every cached token by how far the layer's output would move without it, with no
   proxy query (:mod:`~omnimem_ref.policies.perturbation`, ``proxy="uniform"``);
2. **allocate**: split each layer's free slots across modalities by score mass, with a floor
   (:class:`~omnimem_ref.policies.allocation.ScoreMass`);
3. **select**: fill each share by score, discounting keys that repeat a better-scored one
   (:class:`~omnimem_ref.policies.selection.RedundancyAware`).

Each ablation changes one of those and nothing else; ``compared_with`` names the policy it differs
from by that one change (the benchmark's ablation table reads it):

==========================  =================================================  ================
ablation                    the one change                                     compared with
==========================  =================================================  ================
``omnimem-no-alloc``        one global pool instead of per-modality shares     ``omnimem``
``omnimem-no-redundancy``   plain top-k in each share                          ``omnimem``
``omnimem-value-norm``      score = plain value norm ``||v_i||``               ``omnimem``
``omnimem-tail``            proxy = the chunk's last tokens, not uniform       ``omnimem``
``omnimem-no-perturb``      score = attention, under the same chunk-tail       ``omnimem-tail``
                            queries as ``omnimem-tail``
==========================  =================================================  ================

``omnimem-value-norm`` asks what the leave-one-out score adds over the simplest query-free score
(under the uniform proxy it is a *centred, projected* value norm, ``||W̃ (v_i − v̄)|| / (N − 1)``).
``omnimem-no-perturb`` asks what it adds over attention when both see the same queries: attention
needs a query, so the pair runs under the chunk-tail proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from omnimem_ref.core import ChunkContext, KVMemory
from omnimem_ref.policies.allocation import Allocation, ScoreMass
from omnimem_ref.policies.attention import mean_attention
from omnimem_ref.policies.composed import ComposedPolicy
from omnimem_ref.policies.perturbation import PerturbationScorer
from omnimem_ref.policies.queries import chunk_tail
from omnimem_ref.policies.selection import RedundancyAware, Selection, top_k
from omnimem_ref.policies.vnorm import ValueNormScorer

DEFAULT_PROXY = "uniform"
TAIL_WINDOW = 32  # chunk-tail proxy queries: SnapKV's observation window


@dataclass
class AttentionScorer:
    """Mean attention of the chunk's last ``window`` tokens over memory, averaged over heads: the
    score the ``omnimem-no-perturb`` ablation uses in place of the leave-one-out change."""

    window: int = TAIL_WINDOW

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        return mean_attention(memory, chunk_tail(context, self.window))


class OmniMem(ComposedPolicy):
    """Perturbation scores, score-mass allocation, redundancy-aware selection."""

    name = "omnimem"

    def __init__(
        self,
        proxy: str = DEFAULT_PROXY,
        allocation: Allocation | None = None,
        selection: Selection | None = None,
    ) -> None:
        super().__init__(
            PerturbationScorer(proxy, window=TAIL_WINDOW),
            allocation if allocation is not None else ScoreMass(),
            selection if selection is not None else RedundancyAware(),
        )


class OmniMemNoAlloc(ComposedPolicy):
    """Ablation (allocation): one global pool instead of per-modality shares."""

    name = "omnimem-no-alloc"
    compared_with: ClassVar[str] = "omnimem"

    def __init__(self) -> None:
        super().__init__(PerturbationScorer(DEFAULT_PROXY), None, RedundancyAware())


class OmniMemNoRedundancy(ComposedPolicy):
    """Ablation (selection): plain top-k inside each share."""

    name = "omnimem-no-redundancy"
    compared_with: ClassVar[str] = "omnimem"

    def __init__(self) -> None:
        super().__init__(PerturbationScorer(DEFAULT_PROXY), ScoreMass(), top_k)


class OmniMemValueNorm(ComposedPolicy):
    """Ablation (score): plain value norm instead of the leave-one-out change."""

    name = "omnimem-value-norm"
    compared_with: ClassVar[str] = "omnimem"

    def __init__(self) -> None:
        super().__init__(ValueNormScorer(), ScoreMass(), RedundancyAware())


class OmniMemTail(ComposedPolicy):
    """Ablation (proxy): the chunk's last tokens as proxy queries instead of none."""

    name = "omnimem-tail"
    compared_with: ClassVar[str] = "omnimem"

    def __init__(self) -> None:
        super().__init__(
            PerturbationScorer("tail", window=TAIL_WINDOW), ScoreMass(), RedundancyAware()
        )


class OmniMemNoPerturb(ComposedPolicy):
    """Ablation (score, under the chunk-tail proxy): attention of the chunk's last tokens instead of
    the leave-one-out change; compare it with ``omnimem-tail``, which differs only by the score."""

    name = "omnimem-no-perturb"
    compared_with: ClassVar[str] = "omnimem-tail"

    def __init__(self) -> None:
        super().__init__(AttentionScorer(TAIL_WINDOW), ScoreMass(), RedundancyAware())


ABLATIONS = (OmniMemNoAlloc, OmniMemNoRedundancy, OmniMemValueNorm, OmniMemTail, OmniMemNoPerturb)
