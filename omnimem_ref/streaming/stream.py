"""A clip as the model reads it: per-step patch tokens and audio tokens, with their times.

:class:`Stream` is what the session asks of any model's stream; :class:`StreamInputs` is
TinyOmni's, with every step's inputs computed up front (training, tests, notebooks);
:class:`~omnimem_ref.clip_stream.ClipStream` is TinyOmni's read from a file a chunk at a time
(what ``omnimem eval``, ``demo`` and ``bench`` stream, so memory does not grow with the clip).
Both turn a chunk's inputs into tokens with :func:`encode_steps`. Qwen2.5-Omni's streams are
:class:`omnimem_ref.model.qwen_omni.ThinkerStream` (in memory) and
:class:`~omnimem_ref.model.qwen_omni.clip_stream.ThinkerClipStream` (read a chunk at a time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from omnimem_ref.core import AUDIO, VISUAL, Chunk, StreamingModel, TokenMeta
from omnimem_ref.features import FeatureSpec, audio_tokens, frame_patches


class Stream(Protocol):
    """A clip prepared for one model: ``n_steps`` steps of ``step_seconds`` each."""

    @property
    def n_steps(self) -> int: ...

    @property
    def step_seconds(self) -> float: ...

    def chunk(self, model: StreamingModel, steps: range, first_position: int, origin: int) -> Chunk:
        """The tokens of ``steps``: embeddings, metadata (sequence positions from
        ``first_position``) and rotary positions (the stream's begin at ``origin``)."""
        ...


class TinyOmniSteps:
    """What a TinyOmni stream derives from its feature spec and its number of steps: step length,
    tokens per step, seconds streamed, and the time of every frame and audio token. Shared by
    :class:`StreamInputs` (every step's inputs in memory) and
    :class:`~omnimem_ref.clip_stream.ClipStream` (decoded from the file a chunk at a time)."""

    spec: FeatureSpec

    @property
    def n_steps(self) -> int:
        raise NotImplementedError

    @property
    def step_seconds(self) -> float:
        return self.spec.step_seconds

    @property
    def tokens_per_step(self) -> int:
        return self.spec.tokens_per_step

    @property
    def duration(self) -> float:
        """Seconds streamed: whole steps only."""
        return self.n_steps * self.spec.step_seconds

    def frame_seconds(self) -> torch.Tensor:
        """(steps,) time of each step's frame: the step's midpoint."""
        return frame_seconds(self.spec, range(self.n_steps))

    def audio_seconds(self) -> torch.Tensor:
        """(steps, A) time of each audio token: the midpoint of its window."""
        return audio_seconds(self.spec, range(self.n_steps))


@dataclass
class StreamInputs(TinyOmniSteps):
    """Encoder inputs for every step of a clip.

    ``patches``: (steps, grid*grid, patch_dim); ``audio``: (steps, audio_tokens_per_step,
    audio_dim). Step ``k`` covers seconds ``[k * step, (k + 1) * step)``; its frame is the one at
    the step's midpoint and its audio tokens cover equal consecutive windows.
    """

    patches: torch.Tensor
    audio: torch.Tensor
    spec: FeatureSpec

    @property
    def n_steps(self) -> int:
        return int(self.patches.shape[0])

    @staticmethod
    def from_arrays(frames: np.ndarray, waveform: np.ndarray, spec: FeatureSpec) -> StreamInputs:
        """uint8 frames (one per step, any size) and a mono waveform at ``spec.sample_rate``."""
        n_steps = len(frames)
        return StreamInputs(
            frame_patches(frames, spec), audio_tokens(waveform, spec, n_steps), spec
        )

    def chunk(self, model: StreamingModel, steps: range, first_position: int, origin: int) -> Chunk:
        """TinyOmni's tokens of ``steps``, frame then audio step by step. Plain RoPE: the rotary
        position is the sequence position (``origin`` is where that already is)."""
        inputs = self.patches[steps.start : steps.stop], self.audio[steps.start : steps.stop]
        return encode_steps(model, self.spec, steps, *inputs, first_position)

    def step_meta(self, steps: range, first_position: int) -> TokenMeta:
        """Metadata of the tokens of ``steps``, in stream order (frame tokens, then audio)."""
        return step_meta(self.spec, steps, first_position)


def frame_seconds(spec: FeatureSpec, steps: range) -> torch.Tensor:
    """(len(steps),) time of each step's frame: the step's midpoint."""
    return (torch.arange(steps.start, steps.stop) + 0.5) * spec.step_seconds


def audio_seconds(spec: FeatureSpec, steps: range) -> torch.Tensor:
    """(len(steps), A) time of each audio token: the midpoint of its window."""
    a = spec.audio_tokens_per_step
    window = spec.step_seconds / a
    starts = torch.arange(steps.start, steps.stop).unsqueeze(1) * spec.step_seconds
    return starts + (torch.arange(a) + 0.5) * window


def encode_steps(
    model: StreamingModel,
    spec: FeatureSpec,
    steps: range,
    patches: torch.Tensor,
    audio: torch.Tensor,
    first_position: int,
) -> Chunk:
    """TinyOmni's chunk for ``steps`` from their encoder inputs (``patches`` and ``audio`` of
    those steps only): embeddings, metadata and plain-RoPE rotary positions."""
    device = model.device
    visual = model.encode_visual(patches.to(device), frame_seconds(spec, steps))
    sound = model.encode_audio(audio.to(device), audio_seconds(spec, steps))
    meta = step_meta(spec, steps, first_position)
    return Chunk(model.interleave(visual, sound), meta, meta.position.unsqueeze(0))


def step_meta(spec: FeatureSpec, steps: range, first_position: int) -> TokenMeta:
    """Metadata of the tokens of ``steps``, in stream order (frame tokens, then audio)."""
    p, a = spec.visual_tokens_per_step, spec.audio_tokens_per_step
    n = len(steps)
    frame_t = frame_seconds(spec, steps)
    seconds = torch.cat([frame_t.unsqueeze(1).expand(n, p), audio_seconds(spec, steps)], dim=1)
    modality = torch.tensor([VISUAL] * p + [AUDIO] * a).expand(n, -1)
    patch = torch.tensor(list(range(p)) + [-1] * a).expand(n, -1)
    position = first_position + torch.arange(n * (p + a))
    return TokenMeta(modality.flatten(), seconds.flatten(), patch.flatten(), position)
