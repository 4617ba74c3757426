"""Compressing the KV cache of a plain transformers text decoder with any policy.

So OmniMem and the baselines can be compared with other KV-compression libraries on the same cache
(``docs/design.md`` §3): a ``LlamaForCausalLM`` or ``Qwen2ForCausalLM`` is prefilled with text, and the
same policy objects that compress a TinyOmni stream choose which rows of its ``DynamicCache`` stay.

Every token is text and nothing is protected: there is no prompt prefix to keep, so a policy keeps
the first tokens as attention sinks only if it says so (``recent`` keeps 4, as StreamingLLM does).
Policies that need queries read them from the prefill's hidden states (pass
``output_hidden_states=True`` and hand them over); prompt-based ones (``streammem``, OmniMem's
``prompt`` proxy) need a generic prompt in the model's own vocabulary (``prompt_ids``).

After compression the cache has gaps: keep passing ``position_ids`` that continue from the
original length, and an explicit mask (see :mod:`omnimem_ref.masks`).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel

from omnimem_ref.budget import Budget, parse_budget
from omnimem_ref.core import TEXT, KVMemory, TokenMeta
from omnimem_ref.errors import OmniMemError
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy


def compress_text_cache(
    model: PreTrainedModel,
    cache: DynamicCache,
    policy: CompressionPolicy,
    budget: Budget | int | float | str,
    hidden_states: tuple[torch.Tensor, ...] | None = None,
    prompt_ids: torch.Tensor | None = None,
) -> tuple[DynamicCache, torch.Tensor]:
    """Compress ``cache`` in place to ``budget`` tokens per layer; return it and the kept rows.

    ``budget``: tokens (``500``) or a fraction of the cache (``0.1``), as on the command line.
    ``hidden_states``: the prefill's ``output.hidden_states`` (batch 1), for policies with queries.
    Kept rows are (units, kept) original positions, ascending, assuming the prefill started at
    position 0: one row per layer, or per key/value head of each layer for a head-wise policy
    (:mod:`~omnimem_ref.policies.per_head`). A budget at least the cache's length keeps everything.
    """
    n_layers = model.config.num_hidden_layers
    units_per_layer = model.config.num_key_value_heads if policy.head_wise else 1
    n = cache.get_seq_length()
    tokens = (budget if isinstance(budget, Budget) else parse_budget(budget)).resolve(n)
    device = model.device
    everything = torch.arange(n, device=device).expand(n_layers * units_per_layer, -1)
    if tokens >= n:
        return cache, everything
    memory = _text_memory(cache, n_layers, units_per_layer, n, device)
    kept = policy.select(memory, tokens, _context(model, hidden_states, n, prompt_ids))
    memory.keep(kept)
    return memory.cache, kept


def _text_memory(
    cache: DynamicCache, n_layers: int, units_per_layer: int, n: int, device: torch.device
) -> KVMemory:
    memory = KVMemory(n_layers, units_per_layer)
    memory.cache = cache
    memory.keep_modalities = frozenset()  # no protected prefix in a plain text cache
    units = memory.n_units
    memory.meta = TokenMeta(
        modality=torch.full((units, n), TEXT, device=device),
        seconds=torch.full((units, n), -1.0, device=device),
        patch=torch.full((units, n), -1, device=device),
        position=torch.arange(n, device=device).expand(units, -1).clone(),
    )
    memory.check_aligned()
    return memory


def _context(
    model: PreTrainedModel,
    hidden_states: tuple[torch.Tensor, ...] | None,
    n: int,
    prompt_ids: torch.Tensor | None,
) -> ChunkContext:
    n_layers = model.config.num_hidden_layers
    if hidden_states is None:
        hidden_states = ()
    elif len(hidden_states) < n_layers or hidden_states[0].shape[0] != 1:
        raise OmniMemError(
            "hidden_states must be the prefill's output.hidden_states for one sequence "
            "(batch 1, one tensor per layer)."
        )
    layer_inputs = tuple(hidden_states[:n_layers])
    chunk = layer_inputs[0].shape[1] if layer_inputs else 1
    positions = torch.arange(n - chunk, n, device=model.device)
    return ChunkContext(model, layer_inputs, positions, prompt_ids)
