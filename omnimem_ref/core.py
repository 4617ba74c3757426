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
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

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
    """A ``DynamicCache`` with per-layer token metadata aligned row for row."""

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.cache = DynamicCache()
        self.meta: TokenMeta | None = None
        # Modalities no policy may evict: the prompt prefix. A plain text decoder's cache, where
        # every token is text, sets this empty (see `omnimem_ref.policies.text`).
        self.keep_modalities: frozenset[int] = frozenset({TEXT})
        # Per-token tensors derived from the cache (e.g. v_iᵀ G_h v_i for perturbation scores),
        # shaped (layers, heads, tokens, ...), rows aligned with the cache; see `per_token`.
        self._per_token: dict[str, torch.Tensor] = {}
        self._per_token_version: dict[str, Hashable] = {}  # what each store was computed from
        # `must_keep()` for the current rows and keep_modalities; reset whenever the rows change.
        self._must_keep: tuple[frozenset[int], torch.Tensor] | None = None

    def __len__(self) -> int:
        return 0 if self.meta is None else len(self.meta)

    def _layers(self) -> list[DynamicLayer]:
        return self.cache.layers  # type: ignore[return-value]  # always DynamicLayer here

    def record(self, new: TokenMeta) -> None:
        """Note the metadata of tokens the backbone has just appended to the cache."""
        per_layer = new.map(lambda x: x.unsqueeze(0).expand(self.n_layers, -1))
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
        """Keep rows ``indices[layer]`` (ascending) of every layer; evict the rest."""
        if indices.shape[0] != self.n_layers:
            raise ValueError(f"expected kept indices for {self.n_layers} layers")
        assert self.meta is not None
        for layer, kept in zip(self._layers(), indices, strict=True):
            assert layer.keys is not None and layer.values is not None
            layer.keys = layer.keys[:, :, kept]
            layer.values = layer.values[:, :, kept]
        self.meta = self.meta.map(lambda x: torch.gather(x, 1, indices))
        self._must_keep = None
        for name, rows in list(self._per_token.items()):
            if int(indices[:, -1].max()) >= rows.shape[2]:
                del self._per_token[name]  # some kept rows were never computed: redo when asked
                continue
            index = indices.view(self.n_layers, 1, -1, *[1] * (rows.dim() - 3))
            index = index.expand(-1, rows.shape[1], -1, *rows.shape[3:])  # rows' shape, k tokens
            self._per_token[name] = rows.gather(2, index)
        self.check_aligned()

    def drop_last(self, n: int) -> None:
        """Forget the last ``n`` tokens of every layer (used after answering a question)."""
        if n:
            self.cache.crop(-n)
            assert self.meta is not None
            self.meta = self.meta.map(lambda x: x[:, :-n])
            self._must_keep = None
            for name, rows in list(self._per_token.items()):
                self._per_token[name] = rows[:, :, : len(self)]
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
        start = 0 if stored is None else stored.shape[2]
        if start < len(self):
            new = compute(start)
            stored = new if stored is None else torch.cat([stored, new], dim=2)
            self._per_token[name] = stored
        assert stored is not None
        return stored

    def check_aligned(self) -> None:
        for layer in self._layers():
            if layer.keys is None or layer.keys.shape[-2] != len(self):
                raise AssertionError("KV cache and token metadata are out of step")
        for rows in self._per_token.values():
            if rows.shape[2] > len(self):
                raise AssertionError("per-token tensors and token metadata are out of step")

    def layer_keys(self, layer: int) -> torch.Tensor:
        """(kv_heads, tokens, head_dim) keys of one layer (RoPE already applied)."""
        keys = self._layers()[layer].keys
        assert keys is not None
        return keys[0]

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
        """Tokens held per modality, averaged over layers."""
        if self.meta is None:
            return {name: 0.0 for name in MODALITY_NAMES}
        return {
            name: float((self.meta.modality == m).sum()) / self.n_layers
            for m, name in enumerate(MODALITY_NAMES)
        }

    def bytes_by_modality(self) -> dict[str, int]:
        """Bytes of keys and values held per modality, summed over layers."""
        if self.meta is None or not self.cache.layers:
            return {name: 0 for name in MODALITY_NAMES}
        keys = self.layer_keys(0)
        per_token_per_layer = 2 * keys.shape[0] * keys.shape[-1] * keys.element_size()
        return {
            name: int((self.meta.modality == m).sum()) * per_token_per_layer
            for m, name in enumerate(MODALITY_NAMES)
        }


# What the streaming session needs of a model (TinyOmni is the one in this package): ``.backbone``
# (below), ``.device``, ``.config.text_config.num_hidden_layers``, ``embed_text(ids)``,
# ``encode_visual(patches, seconds)``, ``encode_audio(windows, seconds)``,
# ``interleave(visual, audio)``, ``answer_logits(hidden)`` and ``prompt_format(tokenizer)``
# (a :class:`PromptFormat`).
StreamingModel = Any

# A transformers decoder stack (Qwen2Model, LlamaModel): ``.layers[l].self_attn``,
# ``.layers[l].input_layernorm``, ``.rotary_emb``, ``.config``, ``.get_input_embeddings()``.
Backbone = Any


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
    """

    model: nn.Module
    hidden_states: tuple[torch.Tensor, ...]
    positions: torch.Tensor  # (chunk,) RoPE positions of the chunk's tokens
    prompt_ids: torch.Tensor | None = None
    question_ids: Callable[[str], torch.Tensor] | None = None

    @property
    def backbone(self) -> Backbone:
        """The decoder stack that owns the cache: TinyOmni's ``.backbone``, a CausalLM's ``.model``."""
        backbone = getattr(self.model, "backbone", None)
        return backbone if backbone is not None else self.model.model

    def next_position(self) -> int:
        """The position a token appended right after this chunk would get."""
        return int(self.positions[-1]) + 1


class PromptFormat:
    """How a model's text goes in and its answers come out (the session asks the model for one):
    the prompt prefix written before the stream, a question's token ids, an option's token id."""

    def prompt_ids(self) -> list[int]:
        raise NotImplementedError

    def question_ids(self, question: str) -> list[int]:
        raise NotImplementedError

    def option_id(self, option: str) -> int:
        raise NotImplementedError
