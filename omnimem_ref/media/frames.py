"""Frames at chosen instants, from any video file: all at once (:func:`read_frames`) or a few at a
time (:class:`FrameReader`), with decord or PyAV (see the package docstring)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from omnimem_ref.errors import OmniMemError
from omnimem_ref.media.files import existing_file, open_container, unreadable_video

BACKENDS = ("auto", "decord", "pyav")
BACKEND_ENV = "OMNIMEM_VIDEO_BACKEND"


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video, read without decoding any frame."""

    duration: float
    width: int
    height: int
    has_audio: bool


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open ``path`` and check it holds a video stream; its duration comes from the container."""
    path = existing_file(path)
    with open_container(path) as container:
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
            raise unreadable_video(path, error) from None

    def read(self, times: np.ndarray) -> np.ndarray:
        """The frames, then a seek back to the start: left where a read stopped, decord's reader
        gathers memory from one read to the next (about 300 MB over an hour-long stream here;
        dmlc/decord issues 197 and 208), and the next read seeks from a keyframe anyway."""
        try:
            frames = self._reader.get_batch(_nearest(self._starts, times).tolist()).asnumpy()
            self._reader.seek(0)
        except self._errors as error:
            raise unreadable_video(self.path, error) from None
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
        self._container = open_container(self.path)
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
            raise unreadable_video(self.path, error) from None
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
