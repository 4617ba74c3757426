"""The output projection ``W_O`` as scorers read it: LoRA included, and in a compact square form.

Perturbation scores (OmniMem, CriticalKV) measure a change of a layer's output, which is ``o_proj``
applied to the concatenated head outputs: ``y = W_O [o^1; …; o^H] = Σ_h W_O^h o^h``, where
``W_O^h`` (hidden x head_dim) are the columns of ``o_proj.weight`` that read head ``h``.

Two facts every scorer here relies on:

- **The effective weight.** While a LoRA adapter is active, the layer computes with
  ``W_O + ΔW`` (``ΔW = scale · B A``), not with the base ``o_proj.weight`` that peft keeps as the
  module's ``.weight``. :func:`effective_weight` returns what the layer really applies, so a
  budget-aware adapter changes the scores it was trained to change.
- **A square root of the Gram matrix.** Only norms ``||W x||`` are needed, and
  ``||W x||² = xᵀ WᵀW x``. With the QR factorisation ``W = Q R`` (``Q`` has orthonormal columns),
  ``||W x|| = ||R x||``: ``R`` is ``k x k`` for ``k`` input columns, however wide the hidden
  size. A scorer can therefore cache ``R v_i`` (as large as the value itself) instead of a
  hidden-size vector, and still compute the exact norm of a *difference* by subtracting first:
  ``||W (v_i − v̄)|| = ||R v_i − R v̄||``, centred before squaring, exact in float32.

Computed once per model in float64 (a ``k x k`` factorisation, not on any hot path), cast to the
model's float32, and recomputed when a weight changes (training, or an adapter switched on/off).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import torch
from torch import nn

if TYPE_CHECKING:
    from omnimem_ref.policies.base import Backbone

_CACHE: WeakKeyDictionary[nn.Module, dict[str, tuple[Any, torch.Tensor]]] = WeakKeyDictionary()


def effective_weight(linear: Any) -> torch.Tensor:
    """(out, in): the weight ``linear`` applies, base plus any active LoRA deltas (peft).

    A plain ``nn.Linear`` returns its ``.weight``. A peft LoRA layer keeps the frozen base in
    ``.base_layer``; unless its adapters are disabled or already merged into the base, each
    active adapter adds ``get_delta_weight(name)`` (``scale · B A``).
    """
    base = getattr(linear, "base_layer", linear)
    weight: torch.Tensor = base.weight
    if not hasattr(linear, "get_delta_weight"):
        return weight
    if getattr(linear, "disable_adapters", False) or getattr(linear, "merged", False):
        return weight
    for name in linear.active_adapters:
        if name in linear.lora_A:
            weight = weight + linear.get_delta_weight(name)
    return weight


def _version(linear: nn.Module) -> tuple:
    """Changes whenever the effective weight may have: a parameter updated in place, an adapter
    added, switched on or off, or merged."""
    return (
        tuple((id(p), p._version) for p in linear.parameters()),
        getattr(linear, "disable_adapters", None),
        getattr(linear, "merged", None),
        tuple(getattr(linear, "active_adapters", ())),
    )


def projection_version(backbone: Backbone) -> tuple:
    """A key that changes whenever any layer's effective ``W_O`` may have (see :func:`_version`):
    per-token stores derived from ``W_O`` are recomputed when it does."""
    return tuple(_version(layer.self_attn.o_proj) for layer in backbone.layers)


def cached_per_model(
    backbone: Backbone, name: str, compute: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """``compute()`` once per model and state of its output projections."""
    key = projection_version(backbone)
    store = _CACHE.setdefault(backbone, {})
    cached = store.get(name)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, compute())
        store[name] = cached
    return cached[1]


def output_projection(backbone: Backbone, layer: int) -> torch.Tensor:
    """(hidden, heads * head_dim): ``W_O`` of ``layer``, LoRA included, in float32."""
    return effective_weight(backbone.layers[layer].self_attn.o_proj).float()


def output_projection_slices(backbone: Backbone, layer: int) -> torch.Tensor:
    """(heads, hidden, head_dim): ``W_O^h``, the columns of ``W_O`` that read head ``h``."""
    weight = output_projection(backbone, layer)
    head_dim = backbone.layers[layer].self_attn.head_dim
    return weight.view(weight.shape[0], -1, head_dim).transpose(0, 1)


def square_root(weight: torch.Tensor) -> torch.Tensor:
    """``R`` with ``||weight @ x|| = ||R @ x||`` for every ``x``: the QR factor of ``weight``
    (its last dimension is kept; float64 inside, float32 out)."""
    return torch.linalg.qr(weight.double(), mode="r").R.float()


def grouped_output_projection(backbone: Backbone, layer: int) -> torch.Tensor:
    """(hidden, kv_heads * head_dim): ``W̃_g = Σ_{h in group g} W_O^h``.

    Under grouped-query attention every query head of group ``g`` reads the same value ``v^g``,
    so a change ``x^g`` of the values moves the layer's output by ``Σ_g W̃_g x^g``.
    """
    attention = backbone.layers[layer].self_attn
    slices = output_projection_slices(backbone, layer)  # (heads, hidden, d)
    kv_heads = slices.shape[0] // attention.num_key_value_groups
    grouped = slices.view(kv_heads, -1, *slices.shape[1:]).sum(dim=1)  # (kv_heads, hidden, d)
    return grouped.transpose(0, 1).flatten(1)


def grouped_square_roots(backbone: Backbone) -> torch.Tensor:
    """(layers, kv_heads * d, kv_heads * d): ``R̃`` of :func:`grouped_output_projection`."""

    def compute() -> torch.Tensor:
        return torch.stack(
            [
                square_root(grouped_output_projection(backbone, layer))
                for layer in range(len(backbone.layers))
            ]
        )

    return cached_per_model(backbone, "grouped_square_roots", compute)


def head_square_roots(backbone: Backbone) -> torch.Tensor:
    """(layers, heads, d, d): ``R_h`` of each head's ``W_O^h``."""

    def compute() -> torch.Tensor:
        return torch.stack(
            [
                torch.stack([square_root(w) for w in output_projection_slices(backbone, layer)])
                for layer in range(len(backbone.layers))
            ]
        )

    return cached_per_model(backbone, "head_square_roots", compute)


def kv_head_square_roots(backbone: Backbone) -> torch.Tensor:
    """(layers, kv_heads, d, d): ``R̃_g`` of each group's ``W̃_g`` alone (head-wise scoring, where
    a key/value head's rows are its own tokens)."""

    def compute() -> torch.Tensor:
        roots = []
        for layer in range(len(backbone.layers)):
            grouped = grouped_output_projection(backbone, layer)  # (hidden, kv_heads * d)
            head_dim = backbone.layers[layer].self_attn.head_dim
            roots.append(torch.stack([square_root(w) for w in grouped.split(head_dim, dim=1)]))
        return torch.stack(roots)

    return cached_per_model(backbone, "kv_head_square_roots", compute)
