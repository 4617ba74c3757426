"""What every layer of the package shares: modality codes, token metadata, the KV memory, and
what a policy is told about the chunk just written.

Both :mod:`omnimem_ref.policies` and :mod:`omnimem_ref.streaming` import this module, and it
imports nothing of theirs (nor of :mod:`omnimem_ref.model`): policies score a memory, the session
fills one, and neither needs to know how the other works.

The KV memory is transformers' own ``DynamicCache`` plus what each cached token is. Every layer may
keep a different set of tokens, so the metadata (modality, time, patch index, original position) is
stored per layer, as ``(layers, tokens)`` tensors kept in the same order as the cache's key/value
rows. :meth:`KVMemory.keep` gathers both with the same indices; that single gather is what keeps a
survival map truthful.

**Units: one token set per layer, or per key/value head.** A *unit* is what holds one set of
tokens. Layer-wise (the default) a unit is a layer: every key/value head of the layer keeps the same
tokens. Head-wise (``units_per_layer = kv_heads``, as SnapKV and kvpress select) a unit is one
key/value head of one layer, and row ``i`` of head ``g`` may be a different token from row ``i`` of
head ``g'``. Every head still holds the same number of rows, so the cache keeps one length per
layer and the session's masks and positions work unchanged. Metadata, protected rows, scores and
kept indices are all ``(units, tokens)``: unit ``u`` is head ``u % units_per_layer`` of layer
``u // units_per_layer`` (layer ``u`` itself, layer-wise).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from omnimem_ref.rows import RowBuffer, take_rows_per_head

# What a token is: the prompt and questions are text; the stream is visual and audio tokens.
TEXT, VISUAL, AUDIO = 0, 1, 2
MODALITY_NAMES = ("text", "visual", "audio")


@dataclass
class TokenMeta:
    """Per-token facts, each a tensor of shape (tokens,) or (layers, tokens)."""

    modality: torch.Tensor  # TEXT, VISUAL or AUDIO
    seconds: torch.Tensor  # time in the clip; -1 for text
    patch: torch.Tensor  # grid cell of a visual token; -1 otherwise
    position: torch.Tensor  # original position in the stream (RoPE position)

    def __len__(self) -> int:
        return int(self.position.shape[-1])

    def map(self, fn) -> TokenMeta:
        return TokenMeta(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})


def cache_argument(module: nn.Module, kv_cache: DynamicCache) -> dict[str, DynamicCache]:
    """``{name: kv_cache}`` for ``module(...)``: transformers 5.x renamed ``past_key_values`` to
    ``cache`` (5.24 takes both; 5.17 only the old name, and silently ignores ``cache=``)."""
    return {_cache_keyword(type(module).forward): kv_cache}


@cache
def _cache_keyword(forward: Callable) -> str:
    parameters = inspect.signature(forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


class KVMemory:
    """A ``DynamicCache`` with per-unit token metadata aligned row for row (see "Units" above)."""

    def __init__(self, n_layers: int, units_per_layer: int = 1) -> None:
        self.n_layers = n_layers
        self.units_per_layer = units_per_layer  # 1: layer-wise; kv_heads: head-wise
        self.cache = DynamicCache()
        self.meta: TokenMeta | None = None
        # Modalities no policy may evict: the prompt prefix. A plain text decoder's cache, where
        # every token is text, sets this empty (see `omnimem_ref.policies.text`).
        self.keep_modalities: frozenset[int] = frozenset({TEXT})
        # Per-token tensors derived from the cache (e.g. v_iᵀ G_h v_i for perturbation scores),
        # shaped (layers, heads, tokens, ...), rows aligned with the cache; see `per_token`.
        self._per_token: dict[str, RowBuffer] = {}
        self._per_token_version: dict[str, Hashable] = {}  # what each store was computed from
        # `must_keep()` for the current rows and keep_modalities; reset whenever the rows change.
        self._must_keep: tuple[frozenset[int], torch.Tensor] | None = None

    def __len__(self) -> int:
        return 0 if self.meta is None else len(self.meta)

    @property
    def n_units(self) -> int:
        """Token sets held: one per layer, or one per key/value head of each layer."""
        return self.n_layers * self.units_per_layer

    @property
    def head_wise(self) -> bool:
        return self.units_per_layer > 1

    def units_of(self, layer: int) -> slice:
        """The rows of ``(units, ...)`` tensors that belong to ``layer``."""
        return slice(layer * self.units_per_layer, (layer + 1) * self.units_per_layer)

    def per_unit(self, x: torch.Tensor) -> torch.Tensor:
        """(layers, heads, n) per-head quantities -> (units, n): averaged over the heads of each
        unit (all heads layer-wise; ``heads`` is a multiple of the units: key/value heads, or
        query heads, which GQA groups)."""
        if self.units_per_layer == 1:
            return x.mean(dim=1)
        return x.unflatten(1, (self.units_per_layer, -1)).mean(dim=2).flatten(0, 1)

    def _layers(self) -> list[DynamicLayer]:
        return self.cache.layers  # type: ignore[return-value]  # always DynamicLayer here

    def record(self, new: TokenMeta) -> None:
        """Note the metadata of tokens the backbone has just appended to the cache."""
        per_layer = new.map(lambda x: x.unsqueeze(0).expand(self.n_units, -1))
        if self.meta is None:
            self.meta = per_layer.map(lambda x: x.clone())
        else:
            old = self.meta
            self.meta = TokenMeta(
                **{
                    f.name: torch.cat([getattr(old, f.name), getattr(per_layer, f.name)], dim=1)
                    for f in fields(TokenMeta)
                }
            )
        self._must_keep = None
        self.check_aligned()

    def keep(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices[unit]`` (ascending) of every unit; evict the rest."""
        if indices.shape[0] != self.n_units:
            raise ValueError(f"expected kept indices for {self.n_units} units")
        assert self.meta is not None
        per_layer = indices.view(self.n_layers, self.units_per_layer, -1)
        for layer, kept in zip(self._layers(), per_layer, strict=True):
            assert layer.keys is not None and layer.values is not None
            # (batch, kv_heads, n, d): every head its unit's rows (the same rows, layer-wise)
            layer.keys = take_rows_per_head(layer.keys, kept.unsqueeze(0))
            layer.values = take_rows_per_head(layer.values, kept.unsqueeze(0))
        self.meta = self.meta.map(lambda x: torch.gather(x, 1, indices))
        self._must_keep = None
        last_kept = int(indices[:, -1].max())
        for name, store in list(self._per_token.items()):
            if last_kept >= store.length:
                del self._per_token[name]  # some kept rows were never computed: redo when asked
                continue
            store.keep(per_layer)
        self.check_aligned()

    def drop_last(self, n: int) -> None:
        """Forget the last ``n`` tokens of every layer (used after answering a question)."""
        if n:
            self.cache.crop(-n)
            assert self.meta is not None
            self.meta = self.meta.map(lambda x: x[:, :-n])
            self._must_keep = None
            for store in self._per_token.values():
                store.truncate(len(self))
            self.check_aligned()

    def must_keep(self) -> torch.Tensor:
        """(layers, tokens) booleans: rows no policy may evict (see ``keep_modalities``)."""
        assert self.meta is not None
        if self._must_keep is None or self._must_keep[0] != self.keep_modalities:
            modality = self.meta.modality
            kept = torch.tensor(sorted(self.keep_modalities), device=modality.device)
            self._must_keep = (self.keep_modalities, torch.isin(modality, kept))
        return self._must_keep[1]

    def per_token(
        self, name: str, compute: Callable[[int], torch.Tensor], version: Hashable = None
    ) -> torch.Tensor:
        """A tensor (layers, heads, tokens, ...) derived from the cache, computed once per token.

        ``heads`` is 1 (one entry per token of a layer-wise memory) or a multiple of the units per
        layer (key/value heads, or query heads): :meth:`keep` gathers each head by its unit's rows.

        ``compute(start)`` returns the rows ``start:`` of every layer (the tokens that entered
        memory since the last call); earlier rows come from the store, which :meth:`keep` gathers
        with the cache, so each token's term is computed once, when it is first scored.
        ``version`` names what else the rows depend on (e.g. the model's current weights): a
        store computed under another version is recomputed from scratch.
        """
        if self._per_token_version.get(name) != version:
            self._per_token.pop(name, None)
            self._per_token_version[name] = version
        stored = self._per_token.get(name)
        start = 0 if stored is None else stored.length
        if start < len(self):
            new = compute(start)
            if stored is None:
                stored = self._per_token[name] = RowBuffer(new)
            else:
                stored.append(new)
        assert stored is not None
        return stored.rows

    def check_aligned(self) -> None:
        for layer in self._layers():
            if layer.keys is None or layer.keys.shape[-2] != len(self):
                raise AssertionError("KV cache and token metadata are out of step")
        for store in self._per_token.values():
            if store.length > len(self):
                raise AssertionError("per-token tensors and token metadata are out of step")

    def layer_keys(self, layer: int) -> torch.Tensor:
        """(kv_heads, tokens, head_dim) keys of one layer (RoPE already applied; head-wise, each
        head's rows are its own tokens)."""
        keys = self._layers()[layer].keys
        assert keys is not None
        return keys[0]

    def layer_positions(self, layer: int) -> torch.Tensor:
        """(units_per_layer, tokens) original positions of ``layer``'s rows, per unit."""
        assert self.meta is not None
        return self.meta.position[self.units_of(layer)]

    def layer_values(self, layer: int) -> torch.Tensor:
        """(kv_heads, tokens, head_dim) values of one layer."""
        values = self._layers()[layer].values
        assert values is not None
        return values[0]

    def all_keys(self, start: int = 0) -> torch.Tensor:
        """(layers, kv_heads, tokens, head_dim): every layer's keys from row ``start`` on (every
        layer holds the same number of rows, so policies can score all layers at once)."""
        return torch.stack([self.layer_keys(layer)[:, start:] for layer in range(self.n_layers)])

    def all_values(self, start: int = 0) -> torch.Tensor:
        """(layers, kv_heads, tokens, head_dim): every layer's values from row ``start`` on."""
        return torch.stack([self.layer_values(i)[:, start:] for i in range(self.n_layers)])

    def tokens_by_modality(self) -> dict[str, float]:
        """Tokens held per modality, averaged over units (layers, or heads of layers)."""
        if self.meta is None:
            return {name: 0.0 for name in MODALITY_NAMES}
        return {
            name: float((self.meta.modality == m).sum()) / self.n_units
            for m, name in enumerate(MODALITY_NAMES)
        }

    def bytes_by_modality(self) -> dict[str, int]:
        """Bytes of keys and values held per modality, summed over layers."""
        if self.meta is None or not self.cache.layers:
            return {name: 0 for name in MODALITY_NAMES}
        keys = self.layer_keys(0)
        heads_per_unit = keys.shape[0] // self.units_per_layer
        per_token_per_unit = 2 * heads_per_unit * keys.shape[-1] * keys.element_size()
        return {
            name: int((self.meta.modality == m).sum()) * per_token_per_unit
            for m, name in enumerate(MODALITY_NAMES)
        }


# The boundary between the streaming session and a model (docs/qwen2_5_omni.md). TinyOmni
# (``omnimem_ref.model``) and Qwen2.5-Omni's thinker (``omnimem_ref.model.qwen_omni``) are its two
# implementations.
#
# A model supplies: ``.backbone`` (below), ``.device``, ``.config.text_config.num_hidden_layers``,
# ``prompt_format(tokenizer)`` (a :class:`PromptFormat`), ``embed_text(ids, seconds=None)`` ->
# (n, hidden) (``seconds``: the stream time the text is asked at),
# ``answer_logits(hidden)`` -> vocabulary logits and, where text is not numbered 1, 2, 3, … by
# plain RoPE, ``text_positions(ids, start)`` -> (rows, n) (default :func:`plain_text_positions`);
# for compacted positions (``streaming.compaction``), ``time_rows(modality)`` -> which rotary rows
# carry time (default: all).
# Its stream (what it made of a clip) supplies ``n_steps``, ``step_seconds`` and
# ``chunk(model, steps, first_position, origin)`` -> :class:`Chunk`: embeddings, token metadata
# and rotary positions of those steps.
#
# What policies read of a model: ``backbone.layers[l]`` (``q_proj``, ``o_proj``, the layer norm,
# head counts) and ``backbone.rotary_emb`` at the rotary positions memory keeps beside each row
# (:func:`rotary_positions`). That pair is the whole positional hook: plain RoPE has one row,
# TMRoPE three, and the model's own rotary embedding knows what its rows mean.
StreamingModel = Any

# A transformers decoder stack (Qwen2Model, LlamaModel): ``.layers[l].self_attn``,
# ``.layers[l].input_layernorm``, ``.rotary_emb``, ``.config``, ``.get_input_embeddings()``.
Backbone = Any


@dataclass
class Chunk:
    """One chunk of a stream as the backbone takes it (what a model's stream supplies).

    ``embeddings`` (n, hidden). ``meta.position`` is each token's place in the sequence (prompt,
    stream, question: 0, 1, 2, …, never renumbered after eviction); it orders tokens and indexes
    replayed masks. ``rotary`` (rows, n) is what the rotary embedding sees: one row equal to
    ``meta.position`` for plain RoPE; three rows (time, height, width) for Qwen2.5-Omni's TMRoPE,
    where time advances 25 per second of the clip however many tokens a second holds.
    """

    embeddings: torch.Tensor
    meta: TokenMeta
    rotary: torch.Tensor


def plain_text_positions(ids: torch.Tensor, start: int) -> torch.Tensor:
    """(1, n): plain RoPE numbers text ``start``, ``start + 1``, … ."""
    return (start + torch.arange(len(ids), device=ids.device)).unsqueeze(0)


def rotary_position_ids(rotary: torch.Tensor) -> torch.Tensor:
    """Rotary positions (rows, batch, n) as a backbone's ``position_ids`` and ``rotary_emb`` take
    them: (batch, n) for one row (plain RoPE); (3, batch, n) for TMRoPE, whose rotary embedding
    (transformers' ``Qwen2_5OmniRotaryEmbedding``) reads row ``s`` for frequency section ``s``."""
    return rotary[0] if rotary.shape[0] == 1 else rotary


ROTARY_STORE = "core.rotary_positions"


def record_rotary(memory: KVMemory, rotary: torch.Tensor) -> None:
    """Keep the rotary positions (rows, n) of the ``n`` tokens just recorded beside their rows.

    They live in memory's per-token store, so :meth:`KVMemory.keep` gathers them with the cache and
    :meth:`KVMemory.drop_last` crops them: a row's rotation can always be undone.
    """
    first = len(memory) - rotary.shape[-1]

    def compute(start: int) -> torch.Tensor:
        if start != first:
            raise AssertionError("rotary positions must be recorded with every token")
        per_row = rotary.transpose(0, 1)  # (n, rows)
        return per_row.expand(memory.n_layers, memory.units_per_layer, -1, -1)

    memory.per_token(ROTARY_STORE, compute)


def rotary_positions(memory: KVMemory) -> torch.Tensor:
    """(rows, units, tokens): the rotary positions of memory's rows, per unit like
    ``meta.position``. A memory filled without them (a plain text cache) is at plain positions."""
    assert memory.meta is not None
    meta = memory.meta

    def plain(start: int) -> torch.Tensor:
        position = meta.position[:, start:]
        return position.reshape(memory.n_layers, memory.units_per_layer, -1, 1)

    stored = memory.per_token(ROTARY_STORE, plain)  # (layers, units per layer, tokens, rows)
    return stored.permute(3, 0, 1, 2).flatten(1, 2)


def replace_rotary(memory: KVMemory, rotary: torch.Tensor) -> None:
    """Give memory's rows new rotary positions (rows, units, tokens), once their keys have been
    re-rotated to match (``omnimem_ref.streaming.compaction``)."""
    per_row = rotary.permute(1, 2, 0).unflatten(0, (memory.n_layers, memory.units_per_layer))
    memory._per_token[ROTARY_STORE] = RowBuffer(per_row)


@dataclass
class ChunkContext:
    """What the session knows about the chunk it has just written to memory.

    ``hidden_states[l]`` is the input of layer ``l`` for the chunk's tokens, shape
    ``(1, chunk, hidden)``: policies that need queries (SnapKV-style windows, perturbation
    scores) project them with the layer's own ``q_proj``.

    ``model`` is a TinyOmni (whose ``.backbone`` is the decoder) or a plain transformers
    ``*ForCausalLM`` (whose ``.model`` is). Prompt-based policies (StreamMem, OmniMem's ``prompt``
    proxy) run a generic question as queries: ``question_ids(text)`` turns a question into token
    ids in the model's vocabulary (the session supplies its model's); ``prompt_ids``, when given,
    is used as the prompt whatever the question (a plain text decoder's own ids).

    ``rotary`` (rows, chunk) are the chunk's rotary positions (``None``: ``positions``, plain
    RoPE) and ``text_positions(ids, start)`` the model's rule for text (``None``: plain), so
    queries are rotated where the model itself would rotate them (:meth:`text_rotary`).
    """

    model: nn.Module
    hidden_states: tuple[torch.Tensor, ...]
    positions: torch.Tensor  # (chunk,) sequence positions of the chunk's tokens
    prompt_ids: torch.Tensor | None = None
    question_ids: Callable[[str], torch.Tensor] | None = None
    rotary: torch.Tensor | None = None
    text_positions: Callable[[torch.Tensor, int], torch.Tensor] | None = None

    @property
    def backbone(self) -> Backbone:
        """The decoder stack that owns the cache: TinyOmni's ``.backbone``, a CausalLM's ``.model``."""
        backbone = getattr(self.model, "backbone", None)
        return backbone if backbone is not None else self.model.model

    def next_position(self) -> int:
        """The position a token appended right after this chunk would get."""
        return int(self.positions[-1]) + 1

    def chunk_rotary(self) -> torch.Tensor:
        """(rows, chunk) rotary positions of the chunk's tokens."""
        return self.positions.unsqueeze(0) if self.rotary is None else self.rotary

    def text_rotary(self, ids: torch.Tensor) -> torch.Tensor:
        """(rows, n) rotary positions of text appended right after this chunk: from the chunk's
        largest rotary position plus one (as ``get_rope_index`` continues after a video)."""
        start = int(self.chunk_rotary().max()) + 1
        return (self.text_positions or plain_text_positions)(ids, start)


class PromptFormat:
    """How a model's text goes in and its answers come out (the session asks the model for one):
    the prompt prefix written before the stream, a question's token ids, an option's token id."""

    def prompt_ids(self) -> list[int]:
        raise NotImplementedError

    def question_ids(self, question: str) -> list[int]:
        raise NotImplementedError

    def option_id(self, option: str) -> int:
        raise NotImplementedError

    def choice_ids(self, question: str, options: Sequence[str]) -> tuple[list[int], list[int]]:
        """A multiple-choice question's token ids and each option's answer token id. By default
        the question alone, answered by the option words; a model that answers by letters writes
        the options into the question."""
        return self.question_ids(question), [self.option_id(option) for option in options]
