"""A clip file streamed a chunk at a time: only the chunk's frames and audio are decoded.

:class:`~omnimem_ref.streaming.stream.StreamInputs` holds every step's encoder inputs, so its
memory grows with the clip: an hour of video is 1,800 frames, 58 million audio samples and their
spectrogram, before a single token is streamed. :class:`ClipStream` keeps the file open instead
and, when the session asks for a chunk, decodes that chunk's frames (one per step, the nearest to
its midpoint) and the audio its mel frames read, and computes their patches and log-mel tokens.
Under a memory budget, what ``omnimem eval``, ``demo`` and ``bench`` hold then stays the same
however long the clip.

The chunks are those of the eager path (``StreamInputs.from_arrays`` of
:func:`~omnimem_ref.media.load_clip`): the same frames and the same samples. The log-mel frames of
a window equal the whole clip's because the window carries the ``n_fft // 2`` samples of context
each centred frame reads (:func:`~omnimem_ref.features.audio_window`); audio resampled from
another rate agrees to float rounding.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from omnimem_ref.core import Chunk, StreamingModel
from omnimem_ref.features import FeatureSpec, audio_window, frame_patches, window_audio_tokens
from omnimem_ref.media import (
    AudioReader,
    FrameReader,
    VideoInfo,
    check_long_enough,
    warn_no_audio,
)
from omnimem_ref.streaming.stream import StreamInputs, TinyOmniSteps, encode_steps

# Frames decoded per read: up to 16 steps (32 s of video), and at most 32 MiB of them.
FRAME_BLOCK_STEPS = 16
FRAME_BLOCK_BYTES = 32 << 20


class ClipStream(TinyOmniSteps):
    """TinyOmni's :class:`~omnimem_ref.streaming.stream.Stream` over a clip file, read lazily.

    Opening it checks the file as :func:`~omnimem_ref.media.load_clip` does (missing, empty, not a
    video, shorter than one step, unreadable audio) and warns once if it has no audio track; a
    file broken further in is refused when the stream reaches the broken part.
    """

    def __init__(
        self, path: str | os.PathLike[str], spec: FeatureSpec, backend: str | None = None
    ) -> None:
        self.path = Path(path)
        self.spec = spec
        self._frames = FrameReader(self.path, backend)
        info = self._frames.info
        check_long_enough(self.path, info, spec)
        self.clip_seconds = info.duration
        self._audio = AudioReader(self.path, spec.sample_rate, self.clip_seconds)
        if not self._audio.has_audio:
            warn_no_audio(self.path, stacklevel=2)
        self._block = frames_per_read(info)
        self._held, self._held_steps = np.zeros(0, np.uint8), range(0)  # frames decoded ahead

    @property
    def n_steps(self) -> int:
        return self.spec.n_steps(self.clip_seconds)

    @property
    def has_audio(self) -> bool:
        return self._audio.has_audio

    def patches(self, steps: range) -> torch.Tensor:
        """(len(steps), grid*grid, patch_dim): the patches of each step's frame."""
        return frame_patches(self._frames_of(steps), self.spec)

    def _frames_of(self, steps: range) -> np.ndarray:
        """Each step's frame, decoded with those of the next few steps (``_block`` in all): a
        decord read starts from a keyframe, ~250 frames apart in a generated clip, so one read
        per 2-second step would decode most of them again and again."""
        held = self._held_steps
        if not (held.start <= steps.start and steps.stop <= held.stop):
            stop = min(self.n_steps, max(steps.stop, steps.start + self._block))
            times = self.spec.frame_times(self.clip_seconds)[steps.start : stop]
            self._held, self._held_steps = self._frames.read(times), range(steps.start, stop)
        start = steps.start - self._held_steps.start
        return self._held[start : start + len(steps)]

    def audio(self, steps: range) -> torch.Tensor:
        """(len(steps), audio_tokens_per_step, audio_dim): the audio tokens of ``steps``."""
        start, stop = audio_window(steps, self.spec)
        window = self._audio.window(start, stop)
        return window_audio_tokens(window, steps, self.spec, self._audio.length)

    def to_inputs(self) -> StreamInputs:
        """Every step's encoder inputs, computed a block of steps at a time (the whole clip's
        frames and waveform are never held): for a clip streamed many times, as ``bench`` does
        once per policy and budget, where decoding it again each time costs more than keeping
        its inputs (for TinyOmni ~50 KB a step)."""
        blocks = [
            range(s, min(s + self._block, self.n_steps))
            for s in range(0, self.n_steps, self._block)
        ]
        patches = torch.cat([self.patches(steps) for steps in blocks])
        return StreamInputs(patches, torch.cat([self.audio(steps) for steps in blocks]), self.spec)

    def chunk(self, model: StreamingModel, steps: range, first_position: int, origin: int) -> Chunk:
        """TinyOmni's tokens of ``steps``, decoded now. Plain RoPE: the rotary position is the
        sequence position (``origin`` is where that already is)."""
        return encode_steps(
            model, self.spec, steps, self.patches(steps), self.audio(steps), first_position
        )


def frames_per_read(info: VideoInfo, frames_per_step: int = 1) -> int:
    """Steps whose frames (``frames_per_step`` each) one read decodes: ``FRAME_BLOCK_STEPS``,
    fewer for large frames."""
    step_bytes = 3 * info.width * info.height * frames_per_step
    return max(1, min(FRAME_BLOCK_STEPS, FRAME_BLOCK_BYTES // step_bytes))
