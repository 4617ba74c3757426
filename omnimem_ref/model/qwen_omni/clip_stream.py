"""A clip file streamed to the thinker a chunk at a time: only the chunk's frames and audio are read.

:meth:`ThinkerStream.from_arrays <omnimem_ref.model.qwen_omni.inputs.ThinkerStream.from_arrays>`
holds every frame pair's packed patches and the whole clip's log-mel, so its memory grows with
the clip: an hour is 7,200 frames (at 448 x 448, some 17 GB of float patches) and 58 million
samples. :class:`ThinkerClipStream` keeps the file open instead and, when the session asks for a
chunk, decodes those steps' frames (at :func:`~omnimem_ref.model.qwen_omni.inputs.frame_times`)
and the samples their log-mel frames read (:func:`~omnimem_ref.model.qwen_omni.inputs.mel_window`).

The tokens are the eager path's (``ThinkerStream.from_arrays`` of the whole clip's frames and
waveform): the same frames, and the same log-mel frames, since a window that carries the STFT's
context (reflected at the clip's ends) gives exactly the whole clip's frames. One number depends
on the whole clip: Whisper clamps every value at 8 below the clip's loudest, so that loudest value
is found first, in one pass over the audio a minute at a time (nothing of it is kept). Audio
resampled from another rate agrees to float rounding (each window is resampled with a margin).
"""

from __future__ import annotations

import math
import os
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from omnimem_ref.clip_stream import frames_per_read
from omnimem_ref.errors import OmniMemError
from omnimem_ref.media import AudioReader, FrameReader, NoAudioWarning
from omnimem_ref.model.qwen_omni.inputs import (
    FRAMES_PER_STEP,
    SAMPLE_RATE,
    SAMPLES_PER_STEP,
    STEP_SECONDS,
    ThinkerSteps,
    VisionSettings,
    frame_size,
    frame_times,
    log_mel_power,
    mel_window,
    pack_frames,
    reflect_edges,
    scale_log_mel,
)

# Steps of audio one pass of the loudness scan reads at a time: a minute, ~4 MB of samples.
CEILING_BLOCK_STEPS = 30


class ThinkerClipStream(ThinkerSteps):
    """The thinker's :class:`~omnimem_ref.streaming.stream.Stream` over a clip file, read lazily.

    Opening it checks the file as the eager reader did (missing, not a video, shorter than one
    2-second step, unreadable audio) and warns once if it has no audio track (it is streamed
    with silence); a file broken further in is refused when the stream reaches the broken part.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        settings: VisionSettings,
        n_mels: int = 128,
        backend: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.settings = settings
        self.n_mels = n_mels
        self._frames = FrameReader(self.path, backend)
        info = self._frames.info
        self._n_steps = whole_steps(self.path, info.duration)
        self._audio = AudioReader(self.path, SAMPLE_RATE, info.duration)
        if not self._audio.has_audio:
            warnings.warn(
                f"{self.path} has no audio track: it is streamed with silence.",
                NoAudioWarning,
                stacklevel=2,
            )
        height, width = frame_size(info.height, info.width, settings)
        self.grid = (height // settings.patch_size, width // settings.patch_size)
        self._block = frames_per_read(info, FRAMES_PER_STEP)
        self._held, self._held_steps = np.zeros(0, np.uint8), range(0)  # frames decoded ahead

    @property
    def n_steps(self) -> int:
        return self._n_steps

    @property
    def has_audio(self) -> bool:
        return self._audio.has_audio

    def step_inputs(self, steps: range) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps``' packed frame pairs and log-mel, decoded now."""
        return self.pixels(steps), self.mel(steps)

    def pixels(self, steps: range) -> torch.Tensor:
        """(pairs, patches, patch_dim): the packed frame pairs of ``steps``."""
        pixels, grid = pack_frames(self._frames_of(steps), self.settings)
        if grid != self.grid:  # the grid was promised from the declared size, before decoding
            raise OmniMemError(
                f"{self.path} decodes to frames of another size than it declares; re-encode it."
            )
        return pixels

    def _frames_of(self, steps: range) -> np.ndarray:
        """The 4 frames of each step, decoded with those of the next few steps (``_block`` in
        all): a decord read starts from a keyframe, so one read per step would decode the same
        frames again and again."""
        held = self._held_steps
        if not (held.start <= steps.start and steps.stop <= held.stop):
            stop = min(self.n_steps, max(steps.stop, steps.start + self._block))
            times = frame_times(stop)[steps.start * FRAMES_PER_STEP :]
            self._held, self._held_steps = self._frames.read(times), range(steps.start, stop)
        start = (steps.start - self._held_steps.start) * FRAMES_PER_STEP
        return self._held[start : start + len(steps) * FRAMES_PER_STEP]

    def mel(self, steps: range) -> torch.Tensor:
        """(bins, len(steps) · 200): the whole clip's log-mel frames of ``steps``."""
        ceiling = self._ceiling  # the first time: a pass over the whole clip's audio
        return scale_log_mel(self._log_power(steps), ceiling)

    def _log_power(self, steps: range) -> torch.Tensor:
        """``steps``' log-mel frames before Whisper's clamp, from the samples they read. The
        clip is its first ``n_steps`` · 32,000 samples, padded with silence where the audio is
        shorter (as :func:`~omnimem_ref.model.qwen_omni.inputs.log_mel` cuts and pads it)."""
        start, stop = mel_window(steps)
        clip_samples = self.n_steps * SAMPLES_PER_STEP
        inside = self._audio.window(max(0, start), min(stop, clip_samples))
        return log_mel_power(reflect_edges(inside, start, stop, clip_samples), self.n_mels)

    @cached_property
    def _ceiling(self) -> float:
        """The whole clip's largest log-mel value before the clamp (Whisper keeps 8 below it),
        found on the first chunk by one pass over the audio, ``CEILING_BLOCK_STEPS`` at a
        time."""
        blocks = range(0, self.n_steps, CEILING_BLOCK_STEPS)
        return max(
            float(self._log_power(range(s, min(s + CEILING_BLOCK_STEPS, self.n_steps))).max())
            for s in blocks
        )


def whole_steps(path: Path, duration: float) -> int:
    """The clip's whole 2-second steps; refuse, in one sentence, a clip without one."""
    n_steps = math.floor(duration / STEP_SECONDS)
    if n_steps == 0:
        raise OmniMemError(
            f"{path} lasts {duration:.2f} s, shorter than one {STEP_SECONDS:g}-second "
            "chunk; use a longer clip."
        )
    return n_steps
