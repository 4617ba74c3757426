"""Proxy queries: what stands in, while the clip plays, for the question nobody has asked yet.

Attention-based scores need queries, and a streaming compressor does not know the question.
Three stand-ins (``docs/design.md`` §2, step 1):

- ``tail``: the queries of the last ``w`` tokens of the chunk just written (SnapKV's observation
  window, moved to the end of each chunk);
- ``prompt``: the queries of a fixed generic prompt run after memory *without being stored*
  (StreamMem's idea: a generic request for the clip's content);
- ``uniform``: no query at all; every future query is taken to be equally likely to look
  anywhere. It has no :class:`ProxyQueries`; the scorers handle it in closed form.

A query is what the layer itself would compute: ``RoPE(q_proj(input_layernorm(h)))`` at the token's
original position, with the backbone's own rotary embedding. Positions are the model's rotary
positions (one row for plain RoPE, three for Qwen2.5-Omni's TMRoPE; ``core.Chunk``), so the same
code rotates TinyOmni's queries and the thinker's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from omnimem_ref.core import Backbone, ChunkContext, KVMemory, cache_argument, rotary_position_ids
from omnimem_ref.errors import OmniMemError
from omnimem_ref.masks import attention_mask, chunk_visibility

# A generic request for the clip's content, in the closed vocabulary the tiny model knows.
GENERIC_QUESTION = "what was on the screen and what played ?"
# The question template with no question in it: the analogue of a chat template's turn markers.
TEMPLATE_ONLY = ""


@dataclass
class ProxyQueries:
    """One layer's proxy queries, plus any transient tokens they attend to besides memory.

    ``queries``: (heads, q, head_dim), RoPE applied; ``positions``: (q,). ``extra_keys`` and
    ``extra_values`` (kv_heads, e, head_dim) at ``extra_positions`` (e,) are tokens the queries see
    that are not stored in memory: a generic prompt's own tokens. Their attention weight is real
    (it dilutes the weight on memory) but they are never scored.
    """

    queries: torch.Tensor
    positions: torch.Tensor
    extra_keys: torch.Tensor | None = None
    extra_values: torch.Tensor | None = None
    extra_positions: torch.Tensor | None = None


def project_queries(
    backbone: Backbone, layer: int, hidden: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """(n, hidden) inputs of ``layer`` at ``positions`` -> (heads, n, head_dim) queries.

    ``positions``: rotary positions, (n,) for plain RoPE or (rows, n) (TMRoPE: rows = 3).
    """
    block = backbone.layers[layer]
    attention = block.self_attn
    normed = block.input_layernorm(hidden)
    queries = attention.q_proj(normed).view(hidden.shape[0], -1, attention.head_dim)
    queries = queries.transpose(0, 1).unsqueeze(0)  # (1, heads, n, head_dim)
    rotary = positions.unsqueeze(0) if positions.dim() == 1 else positions  # (rows, n)
    cos, sin = backbone.rotary_emb(normed.unsqueeze(0), rotary_position_ids(rotary.unsqueeze(1)))
    rotated, _ = apply_rotary_pos_emb(queries, queries, cos, sin)
    return rotated[0].float()


@torch.no_grad()
def chunk_tail(context: ChunkContext, window: int) -> list[ProxyQueries]:
    """Per layer, the queries of the chunk's last ``window`` tokens (fewer if the chunk is short).

    Only the chunk just written has hidden states, so the window cannot reach further back.
    """
    if not context.hidden_states:
        raise OmniMemError(
            "This policy uses the queries of the last tokens: pass the prefill's hidden states "
            "(model(..., output_hidden_states=True).hidden_states) as hidden_states."
        )
    positions = context.positions[-window:]
    rotary = context.chunk_rotary()[:, -window:]
    return [
        ProxyQueries(
            project_queries(context.backbone, layer, hidden[0, -window:], rotary), positions
        )
        for layer, hidden in enumerate(context.hidden_states)
    ]


@torch.no_grad()
def generic_prompt(memory: KVMemory, context: ChunkContext, question: str) -> list[ProxyQueries]:
    """Per layer, the queries of a generic prompt run right after memory, then forgotten.

    The prompt goes through the backbone with memory as its cache (explicit positions and mask, as
    the session does), its per-layer inputs and keys/values are read, and the cache is cropped
    back: memory is left exactly as it was. ``context.prompt_ids`` overrides the prompt (needed for
    a plain text decoder, which has no question template); otherwise the session's
    ``context.question_ids`` writes ``question`` in its model's vocabulary.
    """
    backbone = context.backbone
    ids = _prompt_ids(context, question)
    table = backbone.get_input_embeddings()
    embeddings = table(ids.to(table.weight.device))
    n_memory, n_prompt = len(memory), len(ids)
    positions = context.next_position() + torch.arange(n_prompt, device=embeddings.device)
    rotary = context.text_rotary(ids).to(embeddings.device)  # (rows, n_prompt)
    visible = chunk_visibility(n_memory, n_prompt, embeddings.device)
    mask = attention_mask(visible, backbone.config, embeddings.dtype)
    out = backbone(
        inputs_embeds=embeddings.unsqueeze(0),
        attention_mask=mask,
        position_ids=rotary_position_ids(rotary.unsqueeze(1)),
        **cache_argument(backbone, memory.cache),
        use_cache=True,
        output_hidden_states=True,
    )
    proxies = []
    for layer in range(memory.n_layers):
        keys, values = memory.layer_keys(layer), memory.layer_values(layer)
        queries = project_queries(backbone, layer, out.hidden_states[layer][0], rotary)
        proxies.append(
            ProxyQueries(
                queries,
                positions,
                keys[:, n_memory:].float().clone(),
                values[:, n_memory:].float().clone(),
                positions,
            )
        )
    memory.cache.crop(-n_prompt)  # forget the prompt: memory is unchanged
    memory.check_aligned()
    return proxies


def _prompt_ids(context: ChunkContext, question: str) -> torch.Tensor:
    if context.prompt_ids is not None:
        return context.prompt_ids
    if context.question_ids is None:
        raise OmniMemError(
            "This policy runs a generic prompt as proxy queries; for a plain text decoder pass "
            "its token ids (in that model's vocabulary) as prompt_ids."
        )
    return context.question_ids(question)
