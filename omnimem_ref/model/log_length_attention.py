"""Attention that stays as sharp on an hour's memory as on training's two minutes: log-length
scaling of the attention logits.

Why: softmax spreads a query's attention over every key it can see. TinyOmni learnt to find a
question's evidence among at most ~1,100 keys (2-minute clips). Each unrelated key gets a little
weight; among the 16,000 keys of a 30-minute clip at full memory those littles add up and drown
the evidence. Take one key whose logit is ``s`` above ``n`` others at 0: its weight is

    w(n) = e^s / (e^s + n),

so it falls as ``n`` grows. Scaling every logit by ``c`` keeps it at its trained value
``w(n₀)`` when ``c s = s + log(n / n₀)``. With

    c = max(1, log n / log n₀)                                     (log-length scaling)

that holds exactly for ``s = log n₀`` (a key that held half the attention at ``n₀`` keys), and
``c`` is 1 for every query that sees no more keys than training showed: a model is unchanged on
the streams it was trained on, and under any budget up to ``n₀`` tokens.

The same rule is Qwen-7B's ``use_logn_attn`` (Qwen team, 2023) for contexts past its training
length, and what Chiang & Cholak (2022, "Overcoming a theoretical limitation of self-attention")
and Nakanishi (2025, "Scalable-Softmax") derive for attention that must not fade with length.
Here it is applied at inference only, to a model trained without it.

``n`` is the number of keys each query row may attend to (the streaming session's explicit mask
says which). The scale multiplies the query, which scales that row's logits ``q·k / √d`` alike.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, PretrainedConfig
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from omnimem_ref.errors import OmniMemError

LOG_LENGTH_SDPA = "sdpa_log_length"  # the name transformers looks the function up by


def log_length_scale(visible: torch.Tensor, trained_keys: int) -> torch.Tensor:
    """(..., queries, keys) booleans -> (..., queries, 1): ``max(1, log n / log n₀)`` per query
    row, ``n`` the keys it sees and ``n₀ = trained_keys``."""
    n = visible.sum(dim=-1, keepdim=True).clamp(min=1).float()
    return (torch.log(n) / math.log(trained_keys)).clamp(min=1.0)


def sdpa_log_length_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention with each query row's logits scaled by
    :func:`log_length_scale`; the number of keys training showed is the layer config's
    ``log_length_keys`` (none: plain SDPA). The mask must be boolean, as the session's are."""
    trained_keys = getattr(module.config, "log_length_keys", None)
    if trained_keys and attention_mask is not None and attention_mask.dtype == torch.bool:
        query = query * log_length_scale(attention_mask, trained_keys).to(query.dtype)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(LOG_LENGTH_SDPA, sdpa_log_length_attention)


def use_log_length_attention(decoder_config: PretrainedConfig, trained_keys: int) -> None:
    """Switch a decoder (its config: TinyOmni's ``text_config``) to log-length attention with
    ``n₀ = trained_keys``: the most keys a query saw in training."""
    if trained_keys < 2:
        raise OmniMemError(
            f"log_length_keys must be at least 2 (the keys a query saw in training), got "
            f"{trained_keys}."
        )
    decoder_config.log_length_keys = int(trained_keys)
    decoder_config._attn_implementation = LOG_LENGTH_SDPA
