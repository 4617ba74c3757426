"""A Qwen2.5-Omni thinker of a real shape with random weights: the work of the real model, with
nothing downloaded.

For measuring what streaming costs at the sizes the paper runs (3B, 7B) on a lent GPU: the decoder
takes its layers, widths and heads from :data:`omnimem_ref.cost.SHAPES`, the vision and audio
encoders their published sizes (a 32-block vision transformer of width 1280 merging 2 x 2 patches,
a 32-layer Whisper-style audio encoder of width 1280), and the special tokens come from the tiny
word-level tokenizer (:func:`~omnimem_ref.model.qwen_omni.tiny.tiny_tokenizer`). Answers are
meaningless; shapes, positions, masks, memory and times are the real model's. ``encoders="tiny"``
keeps one-layer encoders, so the same code runs in seconds on a CPU (the test does that).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import Qwen2_5OmniThinkerForConditionalGeneration

from omnimem_ref.cost import Shape
from omnimem_ref.model.qwen_omni.inputs import (
    FRAMES_PER_STEP,
    SAMPLE_RATE,
    STEP_SECONDS,
    ThinkerStream,
    VisionSettings,
)
from omnimem_ref.model.qwen_omni.model import QwenOmniThinker
from omnimem_ref.model.qwen_omni.tiny import (
    TINY_AUDIO,
    TINY_VISION,
    thinker_config,
    tiny_tokenizer,
)

# Qwen2.5-Omni's published encoders (both model sizes share them; only their output width follows
# the decoder's hidden size).
PUBLISHED_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
)  # fmt: skip
PUBLISHED_AUDIO = dict(
    encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, d_model=1280
)


def shaped_thinker(
    shape: Shape,
    encoders: str = "published",
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> QwenOmniThinker:
    """A thinker whose decoder has ``shape``'s layers, width and heads, random weights, on
    ``device`` in ``dtype``; ``encoders``: ``"published"`` or ``"tiny"``."""
    if encoders not in ("published", "tiny"):
        raise ValueError(f"encoders must be 'published' or 'tiny', got {encoders!r}")
    tokenizer = tiny_tokenizer()
    vision = PUBLISHED_VISION if encoders == "published" else TINY_VISION
    audio = PUBLISHED_AUDIO if encoders == "published" else TINY_AUDIO
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=32768,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": _mrope_section(shape.hidden // shape.heads),
        },
    )
    config = thinker_config(tokenizer, text, vision, audio)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: no float32 copy of 8B weights
    try:
        with torch.device(device):
            thinker = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    return QwenOmniThinker(thinker, tokenizer, VisionSettings())


def random_thinker_stream(
    model: QwenOmniThinker, seconds: float, size: int = 448, seed: int = 0
) -> ThinkerStream:
    """``seconds`` of random ``size x size`` frames (2 per second) and noise audio at 16 kHz, as
    the thinker's stream: ``(size / 28)²`` video tokens per second and 25 audio tokens."""
    rng = np.random.default_rng(seed)
    steps = max(1, int(seconds // STEP_SECONDS))
    n_frames = steps * FRAMES_PER_STEP
    frames = rng.integers(0, 256, size=(n_frames, size, size, 3), dtype=np.uint8)
    waveform = rng.normal(0, 0.1, size=int(steps * STEP_SECONDS * SAMPLE_RATE)).astype(np.float32)
    return ThinkerStream.from_arrays(
        frames, waveform, model.vision, model.config.audio_config.num_mel_bins
    )


def _mrope_section(head_dim: int) -> list[int]:
    """TMRoPE's split of the ``head_dim / 2`` rotary frequencies into time, height and width:
    Qwen2.5-Omni's [16, 24, 24] of 64, scaled to other head sizes."""
    half = head_dim // 2
    time = half // 4
    height = (half - time) // 2
    return [time, height, half - time - height]
