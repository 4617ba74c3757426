"""Compact rotary positions: streams longer than the model's trained position range.

Qwen2.5-Omni's time row advances 25 per second, so a stream passes the 32,768 positions the model
was trained on after about 22 minutes, however small its memory (``docs/qwen2_5_omni.md`` §3).
StreamingLLM keeps positions inside its cache instead: a token's position is its place in the
cache, not in the stream. The same here, one unit (a layer, or a key/value head) at a time:

1. the unit's stream tokens (not the prompt's) are ranked by their time ``τ`` (rotary row 0);
   equal times share a rank (a frame pair's video tokens and the audio token of that instant);
2. each token moves from ``τ`` to ``τ' = o + rank(τ)`` (``o``: where the stream starts, after the
   prompt); every rotary row that carries time moves by the same ``τ' − τ`` (all rows of an audio
   token; only the time row of a video token, whose height and width rows are its grid cell);
3. its cached key is rotated by the difference, ``R(p') k = R(p' − p) R(p) k`` (rotations by
   ``p · ω`` compose), in each frequency section at once, so the key is exactly the key it would
   have had at its new position;
4. later chunks continue right after the latest compacted time of any unit.

Gaps left by evicted tokens are closed, so memory spans at most ``o + budget`` positions. What
changes is what the model sees of time: kept tokens that were minutes apart become neighbours.
That is StreamingLLM's approximation, unvalidated here on a trained audio-visual model. With
nothing evicted there is no gap and nothing moves. After a compaction a forward pass with the
replayed masks (:meth:`StreamingSession.replay_visibility`) no longer equals the session: it would
need each layer's own positions.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.qwen2.modeling_qwen2 import rotate_half

from omnimem_ref.core import (
    TEXT,
    Backbone,
    KVMemory,
    StreamingModel,
    replace_rotary,
    rotary_position_ids,
    rotary_positions,
)


def time_rows(model: StreamingModel, modality: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows, *shape) booleans: which rotary rows of each token carry its time. The model says
    (``time_rows(modality)``, TMRoPE: not a video token's height and width rows); by default
    every row does (plain RoPE's one row)."""
    hook = getattr(model, "time_rows", None)
    if hook is not None:
        return hook(modality)
    return torch.ones(rows, *modality.shape, dtype=torch.bool, device=modality.device)


def compacted_positions(
    rotary: torch.Tensor, stream: torch.Tensor, moving: torch.Tensor, origin: int
) -> torch.Tensor:
    """(rows, units, n): ``rotary`` with each unit's stream tokens moved from time ``τ`` to
    ``origin + rank(τ)`` on the rotary rows that carry time (``moving``, (rows, units, n)); other
    rows unchanged. ``stream`` (units, n) marks the stream's tokens (the prompt never moves)."""
    moved = rotary.clone()
    for unit in range(rotary.shape[1]):
        tokens = stream[unit]
        times = rotary[0, unit, tokens]
        _, rank = torch.unique(times, sorted=True, return_inverse=True)
        shift = times - (origin + rank)  # τ − τ'
        carries_time = moving[:, unit, tokens]
        moved[:, unit, tokens] = rotary[:, unit, tokens] - torch.where(carries_time, shift, 0)
    return moved


def rerotate_keys(
    memory: KVMemory, backbone: Backbone, old: torch.Tensor, new: torch.Tensor
) -> None:
    """Rotate every cached key from rotary positions ``old`` to ``new`` (rows, units, n):
    ``k' = R(new − old) k``, in float32, with the backbone's own rotary embedding."""
    delta = new - old
    for layer in range(memory.n_layers):
        cached: Any = memory.cache.layers[layer]  # a DynamicLayer
        keys = memory.layer_keys(layer).float()  # (kv_heads, n, d)
        unit_delta = delta[:, memory.units_of(layer)]  # (rows, units per layer, n)
        cos, sin = backbone.rotary_emb(keys, rotary_position_ids(unit_delta))  # (units, n, d)
        rotated = keys * cos.float() + rotate_half(keys) * sin.float()  # units broadcast to heads
        cached.keys = rotated.to(cached.keys.dtype).unsqueeze(0)


def compact(memory: KVMemory, model: StreamingModel, origin: int) -> None:
    """Close the gaps in every unit's stream positions, keys re-rotated to match (module
    docstring). The memory's rotary positions are replaced; its rows and metadata stay."""
    assert memory.meta is not None
    old = rotary_positions(memory)
    stream = memory.meta.modality != TEXT
    new = compacted_positions(old, stream, time_rows(model, memory.meta.modality, len(old)), origin)
    rerotate_keys(memory, model.backbone, old, new)
    replace_rotary(memory, new)
