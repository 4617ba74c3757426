"""OmniMem step 1 of 3: score each cached token by how far the layer's output would move without it.

**Definition.** A proxy query ``q`` attends in head ``h`` with weights ``a_qi`` and outputs
``o_q = Σ_j a_qj v_j``. Evicting token ``i`` removes it from every head of the layer at once
(its key and value rows go); each head's output becomes ``o_q^{-i}``, the same attention over
the other tokens, and changes by

    Δ_qi^h = o_q^h − o_q^{h,-i} = a_qi (v_i − o_q^{h,-i}).

The layer's output is ``o_proj`` of the concatenated heads, so it moves by
``W_O [Δ^1; …; Δ^H] = Σ_h W_O^h Δ_qi^h``. The score is that norm, averaged over proxy queries:

    s_i = mean_q || Σ_h W_O^h Δ_qi^h ||                                   (heads="sum")

(``heads="mean"``, ``mean_{q,h} ||W_O^h Δ_qi^h||``, scores every head on its own; it is the
variant this project first shipped, kept as a named option.) A token nobody attends to
(``a ≈ 0``) and a token whose value is what the heads output anyway (``v_i ≈ o^{-i}``: redundant)
both score near zero: "informative and non-redundant" in one number.

**No query** (``proxy="uniform"``, the default): every token gets ``a = 1/N``, ``o^{-i}`` is the
mean of the others, and ``Δ_i = (v_i − v̄) / (N − 1)`` in every head. Heads of one key/value group
read the same value, so the layer moves by ``W̃ (v_i − v̄) / (N − 1)`` with
``W̃_g = Σ_{h in g} W_O^h`` (:func:`~omnimem_ref.policies.projection.grouped_output_projection`):

    s_i = || W̃ (v_i − v̄) || / (N − 1).

**Readable first, fast beside it.** :func:`leave_one_out_scores` computes the definition directly
(apply ``o_proj`` to the change, take the norm). :func:`uniform_scores` is what the benchmark runs:
``||W̃ x|| = ||R̃ x||`` for the small square ``R̃`` of
:mod:`~omnimem_ref.policies.projection`, and ``w_i = R̃ v_i`` is computed once per token, when it
enters memory, and kept in memory's per-token store, so a compression costs
``|| w_i − w̄ || / (N − 1)``: one subtraction and one norm per token, O(N), centred before squaring
and therefore exact in float32. Tests keep the two equal.

**Float32 where heads saturate.** Trained heads put > 99.9% of a query's weight on one key (an
attention sink). Written as ``a/(1 − a) · (v_i − o)``, both factors of that key lose every digit
float32 has. Written as ``a_i (v_i − o^{-i})``, nothing cancels: for the key holding most of the
weight, ``o^{-i}`` is the attention over the other keys, computed directly; for any other key
``a_i ≤ 1/2``, and ``o^{-i} = (o − a_i v_i) / (1 − a_i)`` is safe (:func:`head_changes`).

Which proxy is the default, and why: see :class:`PerturbationScorer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from omnimem_ref.policies.attention import attention_logits, repeat_kv_heads, visible_keys
from omnimem_ref.policies.projection import (
    grouped_square_roots,
    head_square_roots,
    kv_head_square_roots,
    output_projection,
    projection_version,
)
from omnimem_ref.policies.queries import GENERIC_QUESTION, chunk_tail, generic_prompt
from omnimem_ref.rows import unit_batches

if TYPE_CHECKING:
    from omnimem_ref.core import KVMemory
    from omnimem_ref.policies.base import Backbone, ChunkContext
    from omnimem_ref.policies.queries import ProxyQueries

PROXIES = ("tail", "prompt", "uniform")
HEAD_REDUCTIONS = ("sum", "mean")


def head_changes(logits: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """(heads, q, n, d): ``Δ_qi = a_qi (v_i − o_q^{-i})`` for the first ``n`` keys, in float32.

    ``logits`` (heads, q, keys) and ``values`` (heads, keys, d) cover every key the queries see
    (memory's ``n`` rows first, then any transient prompt tokens, which are never evicted).
    """
    weights = logits.softmax(dim=-1)
    a = weights[..., :n].unsqueeze(-1)  # (heads, q, n, 1)
    v = values[:, :n].unsqueeze(1)  # (heads, 1, n, d)
    output = (weights @ values).unsqueeze(2)  # o_q: (heads, q, 1, d)
    o_without = (output - a * v) / (1 - a).clamp_min(1e-30)  # safe where a_i <= 1/2
    # The key holding most of each query's weight: o^{-i} is the attention over the others
    # (a query that sees no other key outputs nothing, as an empty attention would).
    top = weights.argmax(dim=-1, keepdim=True)  # (heads, q, 1)
    others = logits.scatter(-1, top, float("-inf")).softmax(dim=-1).nan_to_num()
    is_top = torch.zeros_like(weights, dtype=torch.bool).scatter_(-1, top, True)[..., :n]
    o_without = torch.where(is_top.unsqueeze(-1), (others @ values).unsqueeze(2), o_without)
    return a * (v - o_without)


def project_changes(changes: torch.Tensor, w_o: torch.Tensor, heads: str = "sum") -> torch.Tensor:
    """(q, n) norms of the layer's output change, ``||Σ_h W_O^h Δ^h||`` (``"sum"``), or
    (heads, q, n) per-head norms ``||W_O^h Δ^h||`` (``"mean"``, averaged by the caller).

    ``changes`` (heads, q, n, d); ``w_o`` (rows, heads * d): ``o_proj``'s weight, or any ``R``
    with the same ``||R x||`` (:func:`~omnimem_ref.policies.projection.square_root`).
    """
    n_heads, _, _, d = changes.shape
    per_head = w_o.view(w_o.shape[0], n_heads, d).transpose(0, 1)  # (heads, rows, d)
    if heads == "mean":
        return torch.einsum("hkd,hqnd->hqnk", per_head, changes).norm(dim=-1)
    return torch.einsum("hkd,hqnd->qnk", per_head, changes).norm(dim=-1)  # Σ_h W_O^h Δ^h


def project_changes_per_unit(
    changes: torch.Tensor, w_o: torch.Tensor, units: int, heads: str = "sum"
) -> torch.Tensor:
    """(units, q, n): :func:`project_changes` when each unit (a key/value head and its query
    group) loses the row alone, as in a head-wise memory: ``||Σ_{h in unit} W_O^h Δ^h||``
    (``"sum"``) or ``mean_{h in unit} ||W_O^h Δ^h||`` (``"mean"``)."""
    if units == 1:
        norms = project_changes(changes, w_o, heads)
        return norms.unsqueeze(0) if heads == "sum" else norms.mean(dim=0, keepdim=True)
    n_heads, _, _, d = changes.shape
    per_head = w_o.view(w_o.shape[0], n_heads, d).transpose(0, 1)  # (heads, rows, d)
    projected = torch.einsum("hkd,hqnd->hqnk", per_head, changes)  # W_O^h Δ^h
    if heads == "mean":
        return projected.norm(dim=-1).unflatten(0, (units, -1)).mean(dim=1)
    return projected.unflatten(0, (units, -1)).sum(dim=1).norm(dim=-1)  # Σ_{h in unit}


def leave_one_out_scores(
    memory: KVMemory,
    backbone: Backbone,
    proxy: ProxyQueries,
    layer: int,
    heads: str = "sum",
    max_floats: int = 2**24,
) -> torch.Tensor:
    """(units_per_layer, tokens): ``s_i`` of one layer's units for one set of proxy queries, by
    the definition.

    Attention of the proxy over memory (plus its own transient tokens), every token's change of
    every head, ``o_proj`` applied: exactly what the module docstring says. Queries go in blocks
    small enough that the changes, (heads, queries, N, d) floats, stay within ``max_floats``.
    """
    keys, values, positions = visible_keys(memory, layer, proxy)
    logits = attention_logits(proxy.queries, proxy.positions, keys, positions)
    values = repeat_kv_heads(values, logits.shape[0])
    w_o = output_projection(backbone, layer)
    n_heads, n_queries, _ = logits.shape
    block = max(1, max_floats // (n_heads * len(memory) * values.shape[-1]))
    total = torch.zeros(memory.units_per_layer, len(memory), device=keys.device)
    for start in range(0, n_queries, block):
        changes = head_changes(logits[:, start : start + block], values, len(memory))
        norms = project_changes_per_unit(changes, w_o, memory.units_per_layer, heads)
        total += norms.sum(dim=1)  # (units, q, n) summed over queries
    return total / n_queries


def projected_values(memory: KVMemory, backbone: Backbone) -> torch.Tensor:
    """``w_i = R̃ v_i``, each token's values as the output projection sees them, in as many
    numbers as the values (not ``hidden``), computed once per token and kept with memory:

    - layer-wise, (layers, 1, tokens, kv_heads * d): ``||w_i − w_j|| = ||W̃ (v_i − v_j)||``;
    - head-wise, (layers, kv_heads, tokens, d): ``w_i^g = R̃_g v_i^g`` for each key/value head's
      own rows, ``||w_i^g − w_j^g|| = ||W̃_g (v_i^g − v_j^g)||``.
    """
    version = projection_version(backbone)
    if memory.head_wise:
        per_head = kv_head_square_roots(backbone)  # (layers, kv_heads, d, d)

        def compute_per_head(start: int) -> torch.Tensor:
            return memory.all_values(start).float() @ per_head.transpose(-1, -2)  # R̃_g v_i^g

        return memory.per_token("perturbation.projected_values_per_head", compute_per_head, version)

    roots = grouped_square_roots(backbone)  # (layers, k, k), k = kv_heads * d

    def compute(start: int) -> torch.Tensor:
        values = memory.all_values(start).float()  # (layers, kv_heads, new, d)
        stacked = values.transpose(1, 2).flatten(2)  # (layers, new, kv_heads * d): [v^1; …; v^G]
        return (stacked @ roots.transpose(1, 2)).unsqueeze(1)  # R̃ v_i

    return memory.per_token("perturbation.projected_values", compute, version)


def uniform_scores(memory: KVMemory, backbone: Backbone, heads: str = "sum") -> torch.Tensor:
    """(units, tokens): ``s_i`` with no query (``a = 1/N``), every layer at once.

    ``"sum"``: ``||w_i − w̄|| / (N − 1)`` from the per-token store (the fast path), per unit.
    ``"mean"``: ``mean_h ||R_h (v_i − v̄)|| / (N − 1)``, head by head (``head_dim²`` work per token
    and head, at every compression).
    """
    n = len(memory)
    if heads == "sum":
        w = projected_values(memory, backbone).flatten(0, 1)  # (units, n, k)
        norms = [  # a few units at a time: see omnimem_ref.rows
            (w[units] - w[units].mean(dim=1, keepdim=True)).norm(dim=-1)
            for units in unit_batches(len(w), n * w.shape[-1])
        ]
        return torch.cat(norms) / max(n - 1, 1)
    values = memory.all_values().float()  # (layers, kv_heads, n, d)
    roots = head_square_roots(backbone)  # (layers, heads, d, d)
    centred = repeat_kv_heads(values - values.mean(dim=2, keepdim=True), roots.shape[1])
    per_head = (centred @ roots.transpose(-1, -2)).norm(dim=-1)  # ||R_h (v_i − v̄)||
    return memory.per_unit(per_head) / max(n - 1, 1)


@dataclass
class PerturbationScorer:
    """Leave-one-out perturbation scores with a choice of proxy queries.

    ``proxy``: ``"tail"`` (last ``window`` tokens of the chunk), ``"prompt"`` (the generic
    ``question`` run as queries and forgotten), ``"uniform"`` (no query), or a mixture written
    ``"tail+uniform"``: each part normalised to sum 1 per layer, then averaged. ``heads``:
    ``"sum"``, the change of the layer's output (the definition), or ``"mean"``, the mean of the
    heads' own changes.

    Default ``"uniform"``: query-free, the cheapest, and the best measured. Proxy queries look at
    what the chunk or a generic question attends to; the questions asked later attend to the few
    tokens whose values stand out, which is what the uniform score measures. The README's
    "Choosing the defaults" section has the validation-seed numbers behind both defaults.
    """

    proxy: str = "uniform"
    heads: str = "sum"
    window: int = 32
    question: str = GENERIC_QUESTION

    def __post_init__(self) -> None:
        unknown = [part for part in self.proxy.split("+") if part not in PROXIES]
        if unknown:
            raise ValueError(f"unknown proxy {unknown}; use {', '.join(PROXIES)} or a+b")
        if self.heads not in HEAD_REDUCTIONS:
            raise ValueError(f"heads must be one of {HEAD_REDUCTIONS}, got {self.heads!r}")

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        parts = [self._part(name, memory, context) for name in self.proxy.split("+")]
        if len(parts) == 1:
            return parts[0]
        normalised = [p / p.sum(dim=1, keepdim=True).clamp_min(1e-30) for p in parts]  # per unit
        return torch.stack(normalised).mean(dim=0)

    def _part(self, name: str, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        backbone = context.backbone
        if name == "uniform":
            return uniform_scores(memory, backbone, self.heads)
        if name == "tail":
            proxies = chunk_tail(context, self.window)
        else:
            proxies = generic_prompt(memory, context, self.question)
        return torch.cat(
            [
                leave_one_out_scores(memory, backbone, proxy, layer, self.heads)
                for layer, proxy in enumerate(proxies)
            ]
        )
