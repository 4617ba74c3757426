"""Reading real clips: frames at chosen instants and the audio track, from any video file.

The model reads one frame per step (at the step's midpoint) and the whole waveform, so that is all
this module decodes. Any resolution, frame rate and sample rate is accepted: frames come back at
their native size (:func:`omnimem_ref.features.resize_frames` squashes them later) and audio is
resampled to the rate asked for.

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
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import librosa
import numpy as np
import soundfile as sf

from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec

BACKENDS = ("auto", "decord", "pyav")
BACKEND_ENV = "OMNIMEM_VIDEO_BACKEND"


class NoAudioWarning(UserWarning):
    """A clip has no audio track: it is loaded with silence instead."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video, read without decoding any frame."""

    duration: float
    width: int
    height: int
    has_audio: bool


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
    times = spec.frame_times(info.duration)
    if len(times) == 0:
        raise OmniMemError(
            f"{path} lasts {info.duration:.2f} s, shorter than one {spec.step_seconds:g}-second "
            "step; use a longer clip."
        )
    frames = read_frames(path, times, backend=backend)
    waveform = read_audio(path, spec.sample_rate)
    has_audio = waveform is not None
    if waveform is None:
        warnings.warn(
            f"{path} has no audio track: it is loaded with silence, so questions about what "
            "was heard cannot be answered.",
            NoAudioWarning,
            stacklevel=2,
        )
        waveform = np.zeros(int(round(info.duration * spec.sample_rate)), dtype=np.float32)
    return Clip(path, info.duration, frames, waveform, spec.sample_rate, has_audio)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open ``path`` and check it holds a video stream; its duration comes from the container."""
    path = _existing_file(path)
    with _open_container(path) as container:
        if not container.streams.video:
            raise OmniMemError(f"{path} has no video stream; pass a video file such as an .mp4.")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            raise OmniMemError(f"{path} does not say how long it is; re-encode it (e.g. ffmpeg).")
        return VideoInfo(duration, stream.width, stream.height, bool(container.streams.audio))


def video_backend(backend: str | None = None) -> str:
    """The backend to use: the argument, else ``$OMNIMEM_VIDEO_BACKEND``, else decord if present."""
    choice = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
    if choice not in BACKENDS:
        raise OmniMemError(
            f"Unknown video backend {choice!r}; use one of {', '.join(BACKENDS)} "
            f"(argument or ${BACKEND_ENV})."
        )
    if choice == "pyav":
        return choice
    try:
        import decord  # noqa: F401
    except ImportError:
        if choice == "decord":
            raise OmniMemError(
                "decord is not installed (it has wheels for x86_64 only); "
                f"set {BACKEND_ENV}=pyav or install decord."
            ) from None
        return "pyav"
    return "decord"


def read_frames(
    path: str | os.PathLike[str], times: Sequence[float] | np.ndarray, backend: str | None = None
) -> np.ndarray:
    """uint8 frames (len(times), H, W, 3) at native size: for each time, the nearest frame."""
    if len(times) == 0:
        raise ValueError("read_frames needs at least one time")
    path = Path(path)
    info = probe_video(path)  # the same checks and messages for both backends
    if video_backend(backend) == "decord":
        return _read_frames_decord(path, np.asarray(times, dtype=np.float64))
    return _read_frames_pyav(path, np.asarray(times, dtype=np.float64), info.duration)


def _nearest(frame_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame whose timestamp is closest to each of ``times`` (ties go earlier)."""
    if len(frame_times) == 1:
        return np.zeros(len(times), dtype=np.int64)
    right = np.clip(np.searchsorted(frame_times, times), 1, len(frame_times) - 1)
    left = right - 1
    take_left = times - frame_times[left] <= frame_times[right] - times
    return np.where(take_left, left, right)


def _read_frames_decord(path: Path, times: np.ndarray) -> np.ndarray:
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        if len(reader) == 0:
            raise OmniMemError(f"{path} contains no decodable frames; re-encode or replace it.")
        starts = reader.get_frame_timestamp(np.arange(len(reader)))[:, 0]
        return reader.get_batch(_nearest(starts, times).tolist()).asnumpy()
    except (RuntimeError, decord.DECORDError) as error:
        raise _unreadable(path, error) from None


def _read_frames_pyav(path: Path, times: np.ndarray, declared_duration: float) -> np.ndarray:
    """Decode once from the start; keep a frame only when it is the nearest to a wanted time."""
    order = np.argsort(times, kind="stable")
    out: list[np.ndarray | None] = [None] * len(times)
    pending = 0  # index into `order` of the next time still waiting for its frame
    previous: tuple[float, av.VideoFrame] | None = None
    with _open_container(path) as container:
        fps = float(container.streams.video[0].average_rate or 25)
        try:
            for index, frame in enumerate(container.decode(video=0)):
                t = frame.time if frame.time is not None else index / fps  # no timestamps: count
                while pending < len(order) and times[order[pending]] <= t:
                    wanted = times[order[pending]]
                    use_previous = previous is not None and wanted - previous[0] <= t - wanted
                    chosen = previous[1] if use_previous and previous is not None else frame
                    out[order[pending]] = chosen.to_ndarray(format="rgb24")
                    pending += 1
                previous = (t, frame)
        except av.error.FFmpegError as error:
            raise _unreadable(path, error) from None
    if previous is None:
        raise OmniMemError(f"{path} contains no decodable frames; re-encode or replace it.")
    last_time, last_frame = previous
    _check_complete(path, last_time, declared_duration)
    for k in order[pending:]:  # times after the last frame get the last frame
        out[k] = last_frame.to_ndarray(format="rgb24")
    return np.stack([f for f in out if f is not None])


def _check_complete(path: Path, last_frame_time: float, declared: float) -> None:
    """PyAV decodes a truncated file without complaint: compare with the declared duration."""
    if last_frame_time < declared - max(1.0, 0.05 * declared):
        raise OmniMemError(
            f"{path} stops at {last_frame_time:.1f} s but declares {declared:.1f} s, so it is "
            "truncated; download or copy it again."
        )


def read_audio(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray | None:
    """Mono float32 audio at ``sample_rate``, or None if the clip has no audio track.

    ``path`` is a ``.wav`` or a video; for a video, a ``.wav`` with the same stem beside it is
    preferred to the video's own (lossy) audio track.
    """
    path = _existing_file(path)
    if path.suffix.lower() == ".wav":
        return _read_wav(path, sample_rate)
    sibling = path.with_suffix(".wav")
    if sibling.is_file():
        return _read_wav(sibling, sample_rate)
    return _read_audio_track(path, sample_rate)


def _read_wav(path: Path, sample_rate: int) -> np.ndarray:
    try:
        samples, native_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise OmniMemError(
            f"{path} is not a readable audio file ({error}); replace it with a PCM .wav."
        ) from None
    return _to_rate(samples.mean(axis=1), native_rate, sample_rate)


def _read_audio_track(path: Path, sample_rate: int) -> np.ndarray | None:
    with _open_container(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        planar = av.AudioResampler(format="fltp")  # same layout and rate, one row per channel
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray() for f in planar.resample(frame))
            chunks.extend(f.to_ndarray() for f in planar.resample(None))
        except av.error.FFmpegError as error:
            raise _unreadable(path, error) from None
        if not chunks:
            return None
        return _to_rate(np.concatenate(chunks, axis=1).mean(axis=0), stream.rate, sample_rate)


def _to_rate(mono: np.ndarray, native_rate: int, sample_rate: int) -> np.ndarray:
    mono = np.asarray(mono, dtype=np.float32)
    if native_rate != sample_rate:
        mono = librosa.resample(mono, orig_sr=native_rate, target_sr=sample_rate)
    return mono.astype(np.float32)


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise OmniMemError(f"There is no file at {path}; check the path.")
    if not path.is_file():
        raise OmniMemError(f"{path} is not a file; pass the path of a video file.")
    if path.stat().st_size == 0:
        raise OmniMemError(f"{path} is empty (0 bytes); copy or generate it again.")
    return path


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> OmniMemError:
    """FFmpeg's own reason (e.g. "Invalid data found when processing input") when it has one."""
    reason = error.strerror if isinstance(error, av.error.FFmpegError) else None
    detail = f" ({reason})" if reason else ""
    return OmniMemError(
        f"{path} is not a readable video{detail}; check that it is a complete, valid video "
        "file, or re-encode or copy it again."
    )
