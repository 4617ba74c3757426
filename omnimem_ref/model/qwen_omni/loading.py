"""A local Qwen2.5-Omni thinker checkpoint and a clip file, each checked with one-sentence errors.

The folder is what ``Qwen2_5OmniThinkerForConditionalGeneration.save_pretrained`` writes
(``config.json``, safetensors weights) plus the tokenizer's files. Nothing is ever downloaded:
everything is read with ``local_files_only``. Video settings: patch, merge and temporal sizes from
the model's own vision config; the pixel range from ``video_preprocessor_config.json`` where it
is present (``min_pixels``/``max_pixels``, or ``size.shortest_edge``/``longest_edge``), else
Qwen2.5-Omni's published video defaults (128 to 768 merged tokens' worth of pixels per frame).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.qwen_omni.clip_stream import ThinkerClipStream
from omnimem_ref.model.qwen_omni.inputs import VisionSettings
from omnimem_ref.model.qwen_omni.model import QwenOmniThinker

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_folder(path: Path) -> None:
    """Refuse, in one sentence, a folder that is not a thinker checkpoint with its tokenizer."""
    if not path.is_dir():
        raise OmniMemError(
            f"No model folder at {path}; pass a folder written by save_pretrained of a "
            "Qwen2.5-Omni thinker, with its tokenizer files."
        )
    if not (path / "config.json").is_file():
        raise OmniMemError(f"{path} has no config.json, so it is not a save_pretrained folder.")
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type != "qwen2_5_omni_thinker":
        raise OmniMemError(
            f"{path} holds a {model_type!r} model, not a Qwen2.5-Omni thinker "
            "(qwen2_5_omni_thinker); for the full model, save its .thinker with save_pretrained."
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise OmniMemError(f"{path} has no weights ({' or '.join(WEIGHT_FILES)}).")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise OmniMemError(f"{path} has no tokenizer files ({' or '.join(TOKENIZER_FILES)}).")


def load_thinker(
    directory: str | os.PathLike[str], device: str = "cpu", dtype: str = "float32"
) -> QwenOmniThinker:
    """The thinker in ``directory`` on ``device`` in ``dtype``, with sdpa attention (never
    flash-attention, which would read the session's 4D masks as padding)."""
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration

    path = Path(directory)
    check_folder(path)
    if dtype not in DTYPES:
        raise OmniMemError(f"Unknown --dtype {dtype!r}; use one of {', '.join(DTYPES)}.")
    thinker: Any  # a Qwen2_5OmniThinkerForConditionalGeneration
    try:
        thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
            path, dtype=DTYPES[dtype], attn_implementation="sdpa", local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as error:  # transformers, safetensors and json each raise their own kinds
        raise OmniMemError(
            f"{path} could not be loaded as a Qwen2.5-Omni thinker: {error}"
        ) from None
    vision: Any = thinker.config.vision_config
    settings = VisionSettings(
        patch_size=vision.patch_size,
        merge_size=vision.spatial_merge_size,
        temporal_patch_size=vision.temporal_patch_size,
        **pixel_range(path),
    )
    thinker = thinker.to(device).eval()
    return QwenOmniThinker(thinker, tokenizer, settings)


def pixel_range(path: Path) -> dict[str, int]:
    """``min_pixels`` and ``max_pixels`` from the folder's video processor settings, if any."""
    file = path / "video_preprocessor_config.json"
    if not file.is_file():
        return {}
    settings = json.loads(file.read_text())
    size = settings.get("size") or {}
    found = {
        "min_pixels": settings.get("min_pixels", size.get("shortest_edge")),
        "max_pixels": settings.get("max_pixels", size.get("longest_edge")),
    }
    return {key: int(value) for key, value in found.items() if value is not None}


def read_thinker_stream(model: QwenOmniThinker, video: str | os.PathLike[str]) -> ThinkerClipStream:
    """A clip file as the thinker's stream, read a chunk at a time as it is streamed: frames at
    2 per second, audio at 16 kHz (silence, with a warning, for a clip without an audio track);
    cut to whole 2-second steps. For every step's inputs at once, use
    ``ThinkerStream.from_arrays`` on :func:`~omnimem_ref.media.read_frames` and
    :func:`~omnimem_ref.media.read_audio`."""
    n_mels = model.config.audio_config.num_mel_bins
    return ThinkerClipStream(video, model.vision, n_mels)
