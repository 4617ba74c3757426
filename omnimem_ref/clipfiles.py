"""Writing a scene to real files: an H.264 ``.mp4`` (with an AAC audio track) and a ``.wav``.

The files are what a user would feed the model: ordinary video and audio that any player opens,
so the loaders in :mod:`omnimem_ref.media` are exercised on the same path real clips take.

Frames come from :func:`~omnimem_ref.world.render_frame` at ``t = i / fps`` and the audio from
:func:`~omnimem_ref.world.render_waveform`, so a decoded file differs from the arrays used in
training only by codec noise.

Each file is written under a temporary name in its own directory and renamed into place at the
end (a rename within a directory is atomic), so a crash or Ctrl-C never leaves a half-written clip
that a later run would mistake for a good one.

Encoding is deterministic: x264 runs single-threaded (threaded encoding depends on timing), and
nothing time-dependent (creation time) is stored, so the same scene gives the same bytes on the
same machine and library versions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from av.video.reformatter import VideoReformatter

from omnimem_ref.world import Scene, render_frame, render_waveform

VIDEO_CODEC_OPTIONS = {"crf": "23", "preset": "medium", "threads": "1"}
AUDIO_BIT_RATE = 48_000  # plenty for pure tones over noise at 16 kHz, mono


def write_clip(
    scene: Scene,
    mp4_path: str | os.PathLike[str],
    wav_path: str | os.PathLike[str] | None,
    fps: int = 8,
    size: int | tuple[int, int] = 128,
    sample_rate: int = 16000,
    audio_track: bool = True,
) -> None:
    """Render ``scene`` to ``mp4_path`` (and, unless it is None, to ``wav_path``).

    ``size`` is the frame side, or ``(width, height)``: the scene is always rendered square and
    then squashed to that shape, the inverse of what the loaders do, so any resolution shows the
    same picture. ``audio_track=False`` writes a silent (video-only) ``.mp4``, as some real
    clips are.
    """
    width, height = (size, size) if isinstance(size, int) else size
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs an even width and height, got {width}x{height}")
    waveform = render_waveform(scene, sample_rate)
    with _atomic(mp4_path) as tmp:
        _write_mp4(scene, tmp, fps, width, height, waveform if audio_track else None, sample_rate)
    if wav_path is not None:
        with _atomic(wav_path) as tmp:
            sf.write(tmp, waveform, sample_rate, subtype="PCM_16", format="WAV")


@contextmanager
def _atomic(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` only if the block succeeds."""
    final = Path(path)
    tmp = final.with_name(f".{final.name}.partial{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _write_mp4(
    scene: Scene,
    path: Path,
    fps: int,
    width: int,
    height: int,
    waveform: np.ndarray | None,
    sample_rate: int,
) -> None:
    n_frames = int(round(scene.duration * fps))
    side = max(width, height)
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(fps), options=VIDEO_CODEC_OPTIONS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = None
        if waveform is not None:
            audio = container.add_stream("aac", rate=sample_rate, layout="mono")
            audio.bit_rate = AUDIO_BIT_RATE
        to_yuv = VideoReformatter()  # one converter for all frames: 25x faster than per frame
        for i in range(n_frames):
            pixels = render_frame(scene, i / fps, size=side)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame = to_yuv.reformat(frame, width=width, height=height, format="yuv420p")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None and waveform is not None:
            _encode_audio(container, audio, waveform, sample_rate)


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    waveform: np.ndarray,
    sample_rate: int,
) -> None:
    """Feed the waveform to the AAC encoder in codec-sized frames, then flush it."""
    chunk = 1024  # the AAC frame size
    for start in range(0, len(waveform), chunk):
        samples = np.ascontiguousarray(waveform[None, start : start + chunk], dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
