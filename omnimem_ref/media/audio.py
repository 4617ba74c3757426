"""A clip's mono audio at a chosen sample rate: all at once (:func:`read_audio`) or a window at a
time (:class:`AudioReader`); a ``.wav`` beside the video wins over the video's own track."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import av
import librosa
import numpy as np
import soundfile as sf

from omnimem_ref.media.files import (
    existing_file,
    open_container,
    unreadable_audio,
    unreadable_video,
)


def silent_samples(duration: float, sample_rate: int) -> int:
    """Length of the silence that stands in for a missing audio track."""
    return int(round(duration * sample_rate))


def read_audio(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray | None:
    """Mono float32 audio at ``sample_rate``, or None if the clip has no audio track.

    ``path`` is a ``.wav`` or a video; for a video, a ``.wav`` with the same stem beside it is
    preferred to the video's own (lossy) audio track.
    """
    path = existing_file(path)
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
        raise unreadable_audio(path, error) from None
    return _to_rate(samples.mean(axis=1), native_rate, sample_rate)


def _read_audio_track(path: Path, sample_rate: int) -> np.ndarray | None:
    with open_container(path) as container:
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
            raise unreadable_video(path, error) from None
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
        path = existing_file(path)
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
            raise unreadable_audio(path, error) from None
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
            raise unreadable_audio(self.path, error) from None
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
        with open_container(path) as container:
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
        with open_container(self.path) as container:
            stream = container.streams.audio[0]
            planar = av.AudioResampler(format="fltp")  # same layout and rate, a row per channel
            try:
                for frame in container.decode(stream):
                    yield from (f.to_ndarray().mean(axis=0) for f in planar.resample(frame))
                yield from (f.to_ndarray().mean(axis=0) for f in planar.resample(None))
            except av.error.FFmpegError as error:
                raise unreadable_video(self.path, error) from None

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
