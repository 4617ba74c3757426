"""A tiny randomly initialised TinyOmni and a short synthetic stream, built locally for tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from omnimem_ref.core import ChunkContext, KVMemory
from omnimem_ref.features import FeatureSpec
from omnimem_ref.model.configuration import TinyOmniConfig, tiny_text_config
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.policies.base import CompressionPolicy
from omnimem_ref.policies.knorm import KeyNorm
from omnimem_ref.policies.recent import RecentWindow
from omnimem_ref.streaming.stream import StreamInputs
from omnimem_ref.world import render_frame, render_waveform, sample_scene

QUESTION = "what shape was the red object ?"
OPTIONS = ("circle", "square", "triangle", "cross")


def tiny_model(seed: int = 0, **text_overrides) -> TinyOmniModel:
    torch.manual_seed(seed)
    vocab = build_tokenizer().get_vocab_size()
    settings = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2) | text_overrides
    config = TinyOmniConfig(text_config=tiny_text_config(vocab, **settings))
    return TinyOmniModel(config).eval()


def tiny_stream(seconds: float = 16.0, seed: int = 0) -> StreamInputs:
    spec = FeatureSpec()
    scene = sample_scene(np.random.default_rng(seed), seconds, 2, 2)
    frames = np.stack([render_frame(scene, t) for t in spec.frame_times(seconds)])
    return StreamInputs.from_arrays(frames, render_waveform(scene, spec.sample_rate), spec)


class Recorder(CompressionPolicy):
    """Keeps the newest tokens; remembers memory and context as the last compression saw them."""

    name = "recorder"

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        self.memory, self.context = copy.deepcopy(memory), context
        return RecentWindow().select(memory, budget, context)


class HeadWiseRecorder(Recorder):
    """A :class:`Recorder` whose session keeps one token set per key/value head, evicting by each
    head's own key norms (so after one eviction the heads of a layer hold different rows)."""

    name = "recorder-per-head"
    head_wise = True

    def select(self, memory: KVMemory, budget: int, context: ChunkContext) -> torch.Tensor:
        self.memory, self.context = copy.deepcopy(memory), context
        return KeyNorm().select(memory, budget, context)


@contextmanager
def attention_outputs(model: TinyOmniModel) -> Iterator[dict[int, torch.Tensor]]:
    """While active, ``captured[layer]`` is the input of ``o_proj`` (the heads' concatenated
    outputs, (tokens, heads x d)) of the latest forward pass: what the backbone itself attended."""
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        layer.self_attn.o_proj.register_forward_pre_hook(
            lambda module, args, i=i: captured.__setitem__(i, args[0][0].detach())
        )
        for i, layer in enumerate(model.backbone.layers)
    ]
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()
