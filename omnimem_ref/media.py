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
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


def silent_samples(duration: float, sample_rate: int) -> int:
    """Length of the silence that stands in for a missing audio track."""
    return int(round(duration * sample_rate))


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
    reader = FrameReader(path, backend)
    try:
        frames = reader.read(times)
        reader.check_complete()
    finally:
        reader.close()
    return frames


class FrameReader:
    """A video opened once, then read a few instants at a time: the nearest frame to each.

    Only the frames asked for are kept. With PyAV, instants that move forward from one
    :meth:`read` to the next (a stream's chunks) decode the file once from front to back; decord
    seeks from the keyframe before the first instant of each read, so read several at a time.
    """

    def __init__(self, path: str | os.PathLike[str], backend: str | None = None) -> None:
        self.path = Path(path)
        self.info = probe_video(self.path)  # the same checks and messages for both backends
        self._frames: _FrameSource
        if video_backend(backend) == "decord":
            self._frames = _DecordFrames(self.path)
        else:
            self._frames = _PyAVFrames(self.path, self.info.duration)

    def read(self, times: Sequence[float] | np.ndarray) -> np.ndarray:
        """uint8 frames (len(times), H, W, 3) at native size, the nearest one to each time."""
        return self._frames.read(np.asarray(times, dtype=np.float64))

    def check_complete(self) -> None:
        """Refuse a truncated file (PyAV decodes what is left to find its end)."""
        self._frames.check_complete()

    def close(self) -> None:
        self._frames.close()


class _FrameSource(Protocol):
    def read(self, times: np.ndarray) -> np.ndarray: ...

    def check_complete(self) -> None: ...

    def close(self) -> None: ...


def _nearest(frame_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame whose timestamp is closest to each of ``times`` (ties go earlier)."""
    if len(frame_times) == 1:
        return np.zeros(len(times), dtype=np.int64)
    right = np.clip(np.searchsorted(frame_times, times), 1, len(frame_times) - 1)
    left = right - 1
    take_left = times - frame_times[left] <= frame_times[right] - times
    return np.where(take_left, left, right)


class _DecordFrames:
    """decord: random access by frame index, using the file's own frame timestamps."""

    def __init__(self, path: Path) -> None:
        import decord

        self.path = path
        self._errors = (RuntimeError, decord.DECORDError)
        try:
            self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            if len(self._reader) == 0:
                raise OmniMemError(f"{path} contains no decodable frames; re-encode or replace it.")
            self._starts = self._reader.get_frame_timestamp(np.arange(len(self._reader)))[:, 0]
        except self._errors as error:
            raise _unreadable(path, error) from None

    def read(self, times: np.ndarray) -> np.ndarray:
        """The frames, then a seek back to the start: left where a read stopped, decord's reader
        gathers memory from one read to the next (about 300 MB over an hour-long stream here;
        dmlc/decord issues 197 and 208), and the next read seeks from a keyframe anyway."""
        try:
            frames = self._reader.get_batch(_nearest(self._starts, times).tolist()).asnumpy()
            self._reader.seek(0)
        except self._errors as error:
            raise _unreadable(self.path, error) from None
        return frames

    def check_complete(self) -> None:
        """decord reports a broken file when it reads it."""

    def close(self) -> None:
        """decord closes the file when the reader is collected."""


class _PyAVFrames:
    """PyAV: one decoding pass from the start, kept open between reads. For each wanted time it
    keeps the first frame at or after it and the frame before, and returns the nearer; an
    earlier time than the pass has reached starts the pass again."""

    def __init__(self, path: Path, declared_duration: float) -> None:
        self.path = path
        self.declared_duration = declared_duration
        self._container: av.container.InputContainer | None = None
        self._start()

    def _start(self) -> None:
        self.close()
        self._container = _open_container(self.path)
        self._decoded = self._timed_frames(self._container)
        self._before: tuple[float, av.VideoFrame] | None = None  # the frame before _current
        self._current: tuple[float, av.VideoFrame] | None = None  # the latest frame decoded
        self._ended = False

    @staticmethod
    def _timed_frames(
        container: av.container.InputContainer,
    ) -> Iterator[tuple[float, av.VideoFrame]]:
        fps = float(container.streams.video[0].average_rate or 25)
        for index, frame in enumerate(container.decode(video=0)):
            time = frame.time if frame.time is not None else index / fps  # none stored: count
            yield time, frame

    def read(self, times: np.ndarray) -> np.ndarray:
        out: list[np.ndarray | None] = [None] * len(times)
        for k in np.argsort(times, kind="stable"):
            out[k] = self._nearest(float(times[k])).to_ndarray(format="rgb24")
        return np.stack([f for f in out if f is not None])

    def _nearest(self, time: float) -> av.VideoFrame:
        """The frame nearest ``time`` (ties go earlier); past the last frame, the last frame."""
        if self._before is not None and time <= self._before[0]:
            self._start()
        while not self._ended and (self._current is None or self._current[0] < time):
            self._advance()
        assert self._current is not None  # _advance refuses a file without frames
        if self._before is not None and time - self._before[0] <= self._current[0] - time:
            return self._before[1]
        return self._current[1]

    def _advance(self) -> None:
        try:
            frame = next(self._decoded)
        except StopIteration:
            self._ended = True
            if self._current is None:
                raise OmniMemError(
                    f"{self.path} contains no decodable frames; re-encode or replace it."
                ) from None
            _check_complete(self.path, self._current[0], self.declared_duration)
            return
        except av.error.FFmpegError as error:
            raise _unreadable(self.path, error) from None
        self._before, self._current = self._current, frame

    def check_complete(self) -> None:
        while not self._ended:
            self._advance()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


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
        raise _unreadable_audio(path, error) from None
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


class AudioReader:
    """A clip's mono audio at ``sample_rate``, read a window at a time (the same source as
    :func:`read_audio`: a ``.wav`` beside the video, else the video's audio track).

    A ``.wav`` is read by seeking; an audio track is decoded once from front to back, keeping only
    what the next window can still need (an earlier window starts decoding again). Samples before
    the start or past the end read as silence. A clip without audio reads as silence throughout
    (``has_audio`` False), as :func:`load_clip` makes it.
    """

    def __init__(self, path: str | os.PathLike[str], sample_rate: int, duration: float) -> None:
        path = _existing_file(path)
        sibling = path.with_suffix(".wav")
        self._source: _NativeSamples | None
        if path.suffix.lower() == ".wav" or sibling.is_file():
            self._source = _WavSamples(path if path.suffix.lower() == ".wav" else sibling)
        else:
            self._source = _TrackSamples.open(path)
        self.has_audio = self._source is not None
        self.sample_rate = sample_rate
        self._silence = silent_samples(duration, sample_rate)

    @property
    def length(self) -> int | None:
        """Samples at ``sample_rate`` in the whole signal; None until a track is decoded to its
        end."""
        if self._source is None:
            return self._silence
        native = self._source.length
        return None if native is None else _resampled_length(native, self._ratio)

    @property
    def _ratio(self) -> float:
        assert self._source is not None
        return self.sample_rate / self._source.rate

    def window(self, start: int, stop: int) -> np.ndarray:
        """float32 samples ``[start, stop)`` at ``sample_rate``, zeros outside the signal."""
        out = np.zeros(stop - start, dtype=np.float32)
        if self._source is None:
            return out
        first, samples = self._at_rate(max(0, start), stop)
        lo, hi = max(start, first), min(stop, first + len(samples))
        if lo < hi:
            out[lo - start : hi - start] = samples[lo - first : hi - first]
        return out

    def _at_rate(self, start: int, stop: int) -> tuple[int, np.ndarray]:
        """(first, samples): the signal at ``sample_rate`` from sample ``first`` (<= ``start``)
        through ``stop`` or its end. A window resampled alone differs from the whole signal
        resampled only near its edges, so it is widened by a margin that is then ignored, and
        starts on a sample where both rates' grids meet (so it is the same grid)."""
        assert self._source is not None
        native_rate = self._source.rate
        if native_rate == self.sample_rate:
            return start, self._source.read(start, stop)
        step = self.sample_rate // math.gcd(self.sample_rate, native_rate)  # out samples per grid
        native_step = native_rate // math.gcd(self.sample_rate, native_rate)
        first = max(0, start - RESAMPLE_MARGIN) // step * step
        grids = math.ceil((stop + RESAMPLE_MARGIN - first) / step)
        native_first = first // step * native_step
        native = self._source.read(native_first, native_first + grids * native_step)
        return first, _to_rate(native, native_rate, self.sample_rate)


RESAMPLE_MARGIN = 4096  # samples at the target rate either side of a window: > soxr's filter


def _resampled_length(native: int, ratio: float) -> int:
    """What ``librosa.resample`` makes of ``native`` samples (exactly ``native`` at ratio 1)."""
    return native if ratio == 1 else int(np.ceil(native * ratio))


class _NativeSamples(Protocol):
    rate: int

    @property
    def length(self) -> int | None: ...

    def read(self, start: int, stop: int) -> np.ndarray: ...


class _WavSamples:
    """A ``.wav`` (or any file libsndfile reads), read by seeking: mono float32 samples."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = sf.SoundFile(str(path))
        except (sf.LibsndfileError, RuntimeError) as error:
            raise _unreadable_audio(path, error) from None
        self.rate = int(self._file.samplerate)

    @property
    def length(self) -> int:
        return int(self._file.frames)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)``, fewer where the file ends first."""
        if start >= self.length:
            return np.zeros(0, dtype=np.float32)
        try:
            self._file.seek(start)
            samples = self._file.read(stop - start, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise _unreadable_audio(self.path, error) from None
        return samples.mean(axis=1)


class _TrackSamples:
    """A video's audio track, decoded once from the start; only samples from the last window's
    start on are kept. ``length`` is known once the track has been decoded to its end."""

    def __init__(self, path: Path, rate: int) -> None:
        self.path = path
        self.rate = rate
        self.length: int | None = None
        self._restart()

    @classmethod
    def open(cls, path: Path) -> _TrackSamples | None:
        """The track's reader, or None if the video has no audio track."""
        with _open_container(path) as container:
            if not container.streams.audio:
                return None
            rate = container.streams.audio[0].rate
        track = cls(path, rate)
        if len(track.read(0, 1)) == 0:  # a track with nothing to decode, as read_audio sees it
            return None
        return track

    def _restart(self) -> None:
        self._blocks = self._decoded_blocks()
        self._kept = np.zeros(0, dtype=np.float32)
        self._kept_from = 0  # sample index of _kept[0]
        self._ended = False  # this pass has decoded the whole track

    def _decoded_blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks, as :func:`read_audio` decodes the track (then averages it)."""
        with _open_container(self.path) as container:
            stream = container.streams.audio[0]
            planar = av.AudioResampler(format="fltp")  # same layout and rate, a row per channel
            try:
                for frame in container.decode(stream):
                    yield from (f.to_ndarray().mean(axis=0) for f in planar.resample(frame))
                yield from (f.to_ndarray().mean(axis=0) for f in planar.resample(None))
            except av.error.FFmpegError as error:
                raise _unreadable(self.path, error) from None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)``, fewer where the track ends first. Only samples from
        ``start`` on are kept for the next read."""
        if start < self._kept_from:
            self._restart()
        begin, pieces = self._kept_from, [self._kept]
        end = begin + len(self._kept)
        while end < stop and not self._ended:
            block = next(self._blocks, None)
            if block is None:
                self._ended, self.length = True, end
            elif end + len(block) <= start:  # wholly before the window: not needed
                begin = end = end + len(block)
                pieces = []
            else:
                pieces.append(block)
                end += len(block)
        kept = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        drop = min(start - begin, len(kept))
        self._kept, self._kept_from = kept[drop:], begin + drop
        return self._kept[start - self._kept_from : stop - self._kept_from]


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


def _unreadable_audio(path: Path, error: Exception) -> OmniMemError:
    return OmniMemError(
        f"{path} is not a readable audio file ({error}); replace it with a PCM .wav."
    )
