"""Reading real clips: frames at chosen instants and the audio track, from any video file.

The model reads one frame per step (at the step's midpoint) and the waveform, so that is all this
module decodes. Any resolution, frame rate and sample rate is accepted: frames come back at their
native size (:func:`omnimem_ref.features.resize_frames` squashes them later) and audio is
resampled to the rate asked for.

Two ways to read, giving the same frames and samples:

- all at once: :func:`load_clip` (:func:`read_frames`, :func:`read_audio`), for notebooks,
  training and tests that want arrays;
- a piece at a time: :class:`FrameReader` and :class:`AudioReader` keep the file open and decode
  only the frames and the audio window asked for, so the memory they need does not grow with the
  clip (the lazy stream, :mod:`omnimem_ref.clip_stream`). Audio resampled from another rate
  matches the whole-clip resampling to float rounding (each window is resampled with a margin).

Two video backends sit behind :func:`read_frames`:

- ``decord`` (the default where it is installed): random access by frame index, fast;
- ``pyav``: one sequential decoding pass, keeping only the frames asked for. It is the fallback
  where decord has no wheel (aarch64 Linux, macOS) and can be forced with the ``backend``
  argument or the environment variable ``OMNIMEM_VIDEO_BACKEND=pyav``.

Both pick, for each instant, the frame whose timestamp is nearest, using the file's own
timestamps rather than an assumed frame rate.

Audio: a ``.wav`` with the same stem beside the video wins (it is exact, where the video's AAC
track is lossy); otherwise the video's own audio track is decoded with PyAV.

**A clip without audio** is still loaded: its waveform is silence and a :class:`NoAudioWarning`
is emitted, because the visual questions can still be answered but the audio and binding ones
cannot. Refusing such clips would make a common kind of real video (screen recordings, muted
uploads) unusable for no good reason; silently inventing silence would hide why audio answers
are wrong.

Every problem with the file itself (missing, empty, not a video, truncated, too short) raises
:class:`~omnimem_ref.errors.OmniMemError` with one sentence naming the problem and the fix.

The package: ``frames.py`` (video frames, both backends), ``audio.py`` (the audio track or the
``.wav`` beside it), ``files.py`` (opening a file, and the errors about one that cannot be read);
this module puts a whole clip together.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec
from omnimem_ref.media.audio import AudioReader, read_audio, silent_samples
from omnimem_ref.media.frames import (
    BACKEND_ENV,
    BACKENDS,
    FrameReader,
    VideoInfo,
    probe_video,
    read_frames,
    video_backend,
)

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "AudioReader",
    "Clip",
    "FrameReader",
    "NoAudioWarning",
    "VideoInfo",
    "check_long_enough",
    "load_clip",
    "probe_video",
    "read_audio",
    "read_frames",
    "silent_samples",
    "video_backend",
    "warn_no_audio",
]


class NoAudioWarning(UserWarning):
    """A clip has no audio track: it is loaded with silence instead."""


@dataclass
class Clip:
    """A decoded clip: one frame per step (native size) and the mono waveform."""

    path: Path
    duration: float
    frames: np.ndarray  # uint8 (n_steps, H, W, 3), at spec.frame_times(duration)
    waveform: np.ndarray  # float32 mono at sample_rate; silence when has_audio is False
    sample_rate: int
    has_audio: bool


def load_clip(path: str | os.PathLike[str], spec: FeatureSpec, backend: str | None = None) -> Clip:
    """Decode what the model reads from ``path``: the frames at each step midpoint and the audio."""
    path = Path(path)
    info = probe_video(path)
    check_long_enough(path, info, spec)
    times = spec.frame_times(info.duration)
    frames = read_frames(path, times, backend=backend)
    waveform = read_audio(path, spec.sample_rate)
    has_audio = waveform is not None
    if waveform is None:
        warn_no_audio(path, stacklevel=3)
        waveform = np.zeros(silent_samples(info.duration, spec.sample_rate), dtype=np.float32)
    return Clip(path, info.duration, frames, waveform, spec.sample_rate, has_audio)


def check_long_enough(path: Path, info: VideoInfo, spec: FeatureSpec) -> None:
    """Refuse a clip shorter than one step: it has nothing to stream."""
    if spec.n_steps(info.duration) == 0:
        raise OmniMemError(
            f"{path} lasts {info.duration:.2f} s, shorter than one {spec.step_seconds:g}-second "
            "step; use a longer clip."
        )


def warn_no_audio(path: Path, stacklevel: int = 2) -> None:
    """Say once that a clip is read with silence for want of an audio track."""
    warnings.warn(
        f"{path} has no audio track: it is loaded with silence, so questions about what "
        "was heard cannot be answered.",
        NoAudioWarning,
        stacklevel=stacklevel + 1,
    )
