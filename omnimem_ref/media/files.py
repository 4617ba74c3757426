"""Opening a media file, and the one-sentence errors about one that cannot be read."""

from __future__ import annotations

import os
from pathlib import Path

import av

from omnimem_ref.errors import OmniMemError


def existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise OmniMemError(f"There is no file at {path}; check the path.")
    if not path.is_file():
        raise OmniMemError(f"{path} is not a file; pass the path of a video file.")
    if path.stat().st_size == 0:
        raise OmniMemError(f"{path} is empty (0 bytes); copy or generate it again.")
    return path


def open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as error:
        raise unreadable_video(path, error) from None


def unreadable_video(path: Path, error: Exception) -> OmniMemError:
    """FFmpeg's own reason (e.g. "Invalid data found when processing input") when it has one."""
    reason = error.strerror if isinstance(error, av.error.FFmpegError) else None
    detail = f" ({reason})" if reason else ""
    return OmniMemError(
        f"{path} is not a readable video{detail}; check that it is a complete, valid video "
        "file, or re-encode or copy it again."
    )


def unreadable_audio(path: Path, error: Exception) -> OmniMemError:
    return OmniMemError(
        f"{path} is not a readable audio file ({error}); replace it with a PCM .wav."
    )
