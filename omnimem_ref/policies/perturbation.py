"""OmniMem stage 2: score each cached token by how far the layer's output would move without it.

For a proxy query ``q`` with attention weights ``a_qi`` and head output ``o_q = Σ_j a_qj v_j``,
evicting token ``i`` alone renormalises the rest: the output becomes ``(o_q - a_qi v_i)/(1 - a_qi)``.
The change is exactly

    Δ_qi = a_qi / (1 - a_qi) · (v_i - o_q)

and what the next layer sees is ``W_O^h Δ_qi`` (``W_O^h``: the columns of ``o_proj`` that read
head ``h``). The score is ``s_i = mean_{q,h} ||W_O^h Δ_qi||``. A token nobody attends to
(``a ≈ 0``) and a token whose value is what the head outputs anyway (``v_i ≈ o_q``: redundant)
both score near zero: "informative and non-redundant" in one number.

Gram form, so the hidden-size projection is never materialised per token: with
``G_h = W_O^hᵀ W_O^h`` (head_dim x head_dim, once per model),

    ||W_O^h x||² = xᵀ G_h x,   ||W_O^h (v_i - o_q)||² = v_iᵀG_h v_i - 2 (G_h o_q)ᵀ v_i + o_qᵀG_h o_q.

``v_iᵀG_h v_i`` is computed once per token when it enters memory and kept in memory's per-token
store (gathered on every eviction). ``G_h`` is symmetric, so the cross term is computed from the
few queries' side (``G_h o_q``, one small matrix product per query) rather than caching ``G_h v_i``
for every token: same number, ``head_dim`` times less memory per token.

With no particular query (``a_qi = 1/N`` for all ``N`` cached tokens, ``o = v̄``), leave-one-out
reduces to ``||W_O^h (v_i - v̄)|| / (N - 1)``: how far a value sits from the mean value, seen through
the output projection (:func:`uniform_leave_one_out`).

Which proxy is the default, and why: see :class:`PerturbationScorer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import torch
from torch import nn

from omnimem_ref.policies.attention import proxy_attention, repeat_kv_heads
from omnimem_ref.policies.queries import GENERIC_QUESTION, chunk_tail, generic_prompt

if TYPE_CHECKING:
    from omnimem_ref.policies.base import Backbone, ChunkContext
    from omnimem_ref.policies.queries import ProxyQueries
    from omnimem_ref.streaming.memory import KVMemory

PROXIES = ("tail", "prompt", "uniform")

_GRAMS: WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], torch.Tensor]] = WeakKeyDictionary()


def output_projection_slices(backbone: Backbone, layer: int) -> torch.Tensor:
    """(heads, hidden, head_dim): ``W_O^h = o_proj.weight[:, h*d:(h+1)*d]`` for every head."""
    attention = backbone.layers[layer].self_attn
    weight = attention.o_proj.weight.float()  # (hidden, heads * head_dim)
    return weight.view(weight.shape[0], -1, attention.head_dim).transpose(0, 1)


def gram_matrices(backbone: Backbone) -> torch.Tensor:
    """(layers, heads, d, d): ``G_h = W_O^hᵀ W_O^h`` per layer, computed once per model (and again
    if an output projection changes, e.g. while fine-tuning)."""
    versions = tuple(layer.self_attn.o_proj.weight._version for layer in backbone.layers)
    cached = _GRAMS.get(backbone)
    if cached is None or cached[0] != versions:
        with torch.no_grad():
            grams = []
            for layer in range(len(backbone.layers)):
                w = output_projection_slices(backbone, layer).double()  # float64: attention.attend
                grams.append(w.transpose(1, 2) @ w)  # G_h = W_O^hᵀ W_O^h
            cached = (versions, torch.stack(grams))
        _GRAMS[backbone] = cached
    return cached[1]


def value_self_terms(memory: KVMemory, backbone: Backbone) -> torch.Tensor:
    """(layers, heads, tokens): ``v_iᵀ G_h v_i``, computed once per token and kept with memory."""
    grams = gram_matrices(backbone)

    def compute(start: int) -> torch.Tensor:
        values = repeat_kv_heads(memory.all_values(start).double(), grams.shape[1])
        return ((values @ grams) * values).sum(-1)  # v_iᵀ G_h v_i

    return memory.per_token("perturbation.vGv", compute)


def leave_one_out_norms(
    weights: torch.Tensor,
    output: torch.Tensor,
    values: torch.Tensor,
    v_gram_v: torch.Tensor,
    gram: torch.Tensor,
) -> torch.Tensor:
    """(heads, q, tokens): ``||W_O^h Δ_qi||`` in Gram form.

    ``weights`` (heads, q, tokens), ``output`` (heads, q, d), ``values`` (kv_heads, tokens, d),
    ``v_gram_v`` (heads, tokens), ``gram`` (heads, d, d).
    """
    # float64 inside: see attention.attend
    weights, output, v_gram_v, gram = (t.double() for t in (weights, output, v_gram_v, gram))
    n_heads, n_queries, _ = output.shape
    kv_heads = values.shape[0]
    g_o = torch.einsum("hde,hqe->hqd", gram, output)  # G_h o_q
    grouped = g_o.view(kv_heads, n_heads // kv_heads, n_queries, -1)
    cross = torch.einsum("grqd,gnd->grqn", grouped, values.double()).reshape(n_heads, n_queries, -1)
    o_gram_o = (output * g_o).sum(-1)  # o_qᵀ G_h o_q
    # ||W_O^h (v_i - o_q)||² = v_iᵀG_h v_i - 2 o_qᵀ G_h v_i + o_qᵀ G_h o_q
    squared = v_gram_v.unsqueeze(1) - 2 * cross + o_gram_o.unsqueeze(-1)
    factor = weights / (1 - weights).clamp_min(1e-12)  # a_qi / (1 - a_qi)
    return (factor * squared.clamp_min(0).sqrt()).float()


def uniform_leave_one_out(
    values: torch.Tensor, v_gram_v: torch.Tensor, gram: torch.Tensor
) -> torch.Tensor:
    """(..., heads, tokens): ``||W_O^h (v_i - v̄)|| / (N - 1)``, leave-one-out under uniform attention.

    ``values`` (..., kv_heads, tokens, d), ``v_gram_v`` (..., heads, tokens), ``gram``
    (..., heads, d, d); the leading axes (e.g. layers) are computed all at once.
    """
    n, kv_heads = values.shape[-2], values.shape[-3]
    values, v_gram_v, gram = values.double(), v_gram_v.double(), gram.double()
    mean = repeat_kv_heads(values.mean(dim=-2, keepdim=True), gram.shape[-3])  # v̄ per head
    g_mean = mean @ gram  # (..., heads, 1, d): G_h v̄ (G_h is symmetric)
    mean_gram_mean = (mean * g_mean).sum(-1)  # v̄ᵀ G_h v̄
    # v̄ᵀ G_h v_i: each key/value head's values times the G_h v̄ of its query heads, one matmul
    per_group = g_mean.squeeze(-2).unflatten(-2, (kv_heads, -1))  # (..., kv_heads, group, d)
    cross = (values @ per_group.transpose(-1, -2)).transpose(-1, -2).flatten(-3, -2)
    squared = v_gram_v - 2 * cross + mean_gram_mean  # ||W_O^h (v_i - v̄)||²
    return (squared.clamp_min(0).sqrt() / max(n - 1, 1)).float()


def naive_leave_one_out(
    weights: torch.Tensor, output: torch.Tensor, values: torch.Tensor, w_o: torch.Tensor
) -> torch.Tensor:
    """(heads, q, tokens): ``||W_O^h Δ_qi||`` computed literally (the reference the Gram form is
    tested against; it materialises a hidden-size vector per query, head and token)."""
    values = repeat_kv_heads(values.double(), weights.shape[0])
    weights, output = weights.double(), output.double()
    factor = weights / (1 - weights).clamp_min(1e-12)
    delta = factor.unsqueeze(-1) * (values.unsqueeze(1) - output.unsqueeze(2))  # Δ_qi
    projected = torch.einsum("hkd,hqnd->hqnk", w_o.double(), delta)  # W_O^h Δ_qi
    return projected.norm(dim=-1).float()


def perturbation_scores(
    memory: KVMemory, backbone: Backbone, proxies: list[ProxyQueries] | None
) -> torch.Tensor:
    """(layers, tokens): ``s_i`` averaged over proxy queries and heads; ``None``: uniform."""
    grams = gram_matrices(backbone)
    v_gram_v = value_self_terms(memory, backbone)
    if proxies is None:  # no queries: every layer at once
        return uniform_leave_one_out(memory.all_values(), v_gram_v, grams).mean(dim=1)
    scores = []
    for layer, proxy in enumerate(proxies):
        weights, output = proxy_attention(memory, layer, proxy, torch.float64)
        values = memory.layer_values(layer)
        norms = leave_one_out_norms(weights, output, values, v_gram_v[layer], grams[layer])
        scores.append(norms.mean(dim=(0, 1)))
    return torch.stack(scores)


@dataclass
class PerturbationScorer:
    """Leave-one-out perturbation scores with a choice of proxy queries.

    ``proxy``: ``"tail"`` (last ``window`` tokens of the chunk), ``"prompt"`` (the generic
    ``question`` run as queries and forgotten), ``"uniform"`` (no query), or a mixture written
    ``"tail+uniform"``: each part normalised to sum 1 per layer, then averaged.

    Default ``"uniform"``: query-free, the cheapest, and the best. DESIGN.md's probe found it
    best (85.3% vs 76.8% for the chunk tail at a 10% budget), and so does the shipped checkpoint:
    ``omnimem`` at 5% on the first 100 held-out benchmark clips (400 questions) answers 98.2% with
    ``"uniform"``, 93.2% with ``"prompt+uniform"``, 78.5% with ``"prompt"`` and 73.0% with
    ``"tail"``. Proxy queries look at what the chunk or a generic question attends to; the
    questions asked later attend to the few tokens whose values stand out, which is what the
    uniform leave-one-out score measures.
    """

    proxy: str = "uniform"
    window: int = 32
    question: str = GENERIC_QUESTION

    def __post_init__(self) -> None:
        unknown = [part for part in self.proxy.split("+") if part not in PROXIES]
        if unknown:
            raise ValueError(f"unknown proxy {unknown}; use {', '.join(PROXIES)} or a+b")

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        parts = [self._part(name, memory, context) for name in self.proxy.split("+")]
        if len(parts) == 1:
            return parts[0]
        normalised = [p / p.sum(dim=1, keepdim=True).clamp_min(1e-30) for p in parts]
        return torch.stack(normalised).mean(dim=0)

    def _part(self, name: str, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        return perturbation_scores(memory, context.backbone, self._proxies(name, memory, context))

    def _proxies(
        self, name: str, memory: KVMemory, context: ChunkContext
    ) -> list[ProxyQueries] | None:
        if name == "tail":
            return chunk_tail(context, self.window)
        if name == "prompt":
            return generic_prompt(memory, context, self.question)
        return None
