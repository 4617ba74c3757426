"""The lazy clip stream: chunk by chunk, the same tokens as decoding the whole clip at once.

:class:`~omnimem_ref.clip_stream.ClipStream` decodes only the frames and audio of the steps asked
for; every chunk must equal the eager path's (``StreamInputs.from_arrays`` of ``load_clip``):
frames and metadata exactly, audio tokens to float rounding (``AUDIO_TOLERANCE``: the spectrogram
of a window against the whole clip's; more where the audio is resampled, each window on its own).
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from omnimem_ref import media
from omnimem_ref.clip_stream import ClipStream
from omnimem_ref.clipfiles import write_clip
from omnimem_ref.errors import OmniMemError
from omnimem_ref.evaluation import read_stream
from omnimem_ref.features import FeatureSpec
from omnimem_ref.streaming.stream import StreamInputs
from omnimem_ref.world import AudioEvent, Scene, VisualEvent
from tests.test_media import _bad_files, _one_sentence

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples" / "tiny"
HAS_DECORD = importlib.util.find_spec("decord") is not None
BACKENDS = [
    pytest.param("decord", marks=pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")),
    "pyav",
]
SPEC = FeatureSpec()
AUDIO_TOLERANCE = 1e-6  # log-mel tokens are order one; measured ~4e-7
RESAMPLED_TOLERANCE = 1e-5  # each window resampled alone; measured ~2e-6
# 17.3 s: eight whole steps and a partial one, which both paths drop.
ODD_SCENE = Scene(
    duration=17.3,
    texture_seed=5,
    visual=(VisualEvent("magenta", "square", 6, 2.4, 5.3, (0.01, -0.01)),),
    audio=(AudioEvent("high", True, 1.0, 3.0), AudioEvent("low", False, 5.5, 7.2)),
)


def eager(path: Path, backend: str | None = None) -> StreamInputs:
    clip = media.load_clip(path, SPEC, backend=backend)
    return StreamInputs.from_arrays(clip.frames, clip.waveform, SPEC)


def chunks(n_steps: int, size: int) -> list[range]:
    return [range(s, min(s + size, n_steps)) for s in range(0, n_steps, size)]


def assert_same_inputs(lazy: ClipStream, whole: StreamInputs, size: int, tolerance: float) -> None:
    """Every chunk's patches equal, audio tokens within ``tolerance``."""
    assert lazy.n_steps == whole.n_steps
    for steps in chunks(lazy.n_steps, size):
        part = slice(steps.start, steps.stop)
        assert torch.equal(lazy.patches(steps), whole.patches[part])
        torch.testing.assert_close(lazy.audio(steps), whole.audio[part], rtol=0, atol=tolerance)


def assert_same_chunk(model, lazy: ClipStream, whole: StreamInputs, steps: range) -> None:
    with torch.no_grad():
        a, b = lazy.chunk(model, steps, 7, 7), whole.chunk(model, steps, 7, 7)
    for field in ("modality", "seconds", "patch", "position"):
        assert torch.equal(getattr(a.meta, field), getattr(b.meta, field)), field
    assert torch.equal(a.rotary, b.rotary)
    torch.testing.assert_close(a.embeddings, b.embeddings, rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["clip_0000", "clip_0003"])
def test_sample_clips_stream_the_same_chunks_as_the_whole_clip(model, name, backend) -> None:
    path = SAMPLES / f"{name}.mp4"
    lazy, whole = ClipStream(path, SPEC, backend), eager(path, backend)
    assert (lazy.duration, lazy.tokens_per_step) == (whole.duration, whole.tokens_per_step)
    assert torch.equal(lazy.frame_seconds(), whole.frame_seconds())
    assert torch.equal(lazy.audio_seconds(), whole.audio_seconds())
    assert_same_inputs(lazy, whole, size=1, tolerance=AUDIO_TOLERANCE)
    assert_same_inputs(lazy, whole, size=4, tolerance=AUDIO_TOLERANCE)  # and going back
    for steps in chunks(lazy.n_steps, 5):
        assert_same_chunk(model, lazy, whole, steps)
    held = lazy.to_inputs()  # decoded once, for a clip streamed many times
    assert torch.equal(held.patches, whole.patches)
    torch.testing.assert_close(held.audio, whole.audio, rtol=0, atol=AUDIO_TOLERANCE)


def test_a_clip_without_audio_streams_silence_and_warns_once(tmp_path) -> None:
    mp4 = tmp_path / "mute.mp4"
    write_clip(ODD_SCENE, mp4, None, audio_track=False)
    with pytest.warns(media.NoAudioWarning, match="cannot be answered") as caught:
        lazy = ClipStream(mp4, SPEC)
    assert len(caught) == 1 and not lazy.has_audio
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # streaming warns no more
        patches, audio = lazy.patches(range(lazy.n_steps)), lazy.audio(range(lazy.n_steps))
    with pytest.warns(media.NoAudioWarning):
        whole = eager(mp4)
    assert torch.equal(patches, whole.patches) and torch.equal(audio, whole.audio)


@pytest.fixture(scope="module")
def odd_clips(tmp_path_factory) -> dict[str, Path]:
    """One odd clip: 17.3 s (not whole steps), 12 fps, 160x120, audio at 44.1 kHz (resampled
    window by window): read from a .wav beside it, or alone, from its AAC track."""
    folder = tmp_path_factory.mktemp("odd")
    mp4 = folder / "odd.mp4"
    write_clip(ODD_SCENE, mp4, mp4.with_suffix(".wav"), fps=12, size=(160, 120), sample_rate=44100)
    (folder / "alone").mkdir()
    return {"wav": mp4, "aac-track": Path(shutil.copy(mp4, folder / "alone" / "odd.mp4"))}


@pytest.mark.parametrize("audio", ["wav", "aac-track"])
def test_odd_length_rate_and_size_stream_the_same_chunks(odd_clips, audio) -> None:
    lazy = ClipStream(odd_clips[audio], SPEC)
    assert lazy.n_steps == 8 and lazy.clip_seconds == pytest.approx(17.3, abs=0.1)
    assert_same_inputs(lazy, eager(odd_clips[audio]), size=3, tolerance=RESAMPLED_TOLERANCE)


def test_an_audio_track_read_out_of_order_equals_the_whole_track(tmp_path) -> None:
    """Windows in any order, overlapping, before the start and past the end (decoding restarts)."""
    mp4 = Path(shutil.copy(SAMPLES / "clip_0001.mp4", tmp_path / "alone.mp4"))  # no .wav beside
    whole = media.read_audio(mp4, SPEC.sample_rate)
    assert whole is not None
    reader = media.AudioReader(mp4, SPEC.sample_rate, duration=36.0)
    padded = np.concatenate([np.zeros(5000, np.float32), whole, np.zeros(9000, np.float32)])
    for start in (100_000, 40_000, -3000, 41_000, len(whole) - 2000, 7_000):
        window = reader.window(start, start + 8000)
        np.testing.assert_array_equal(window, padded[start + 5000 : start + 13000])
    assert reader.length == len(whole)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_read_out_of_order_are_the_nearest_ones(backend) -> None:
    path = SAMPLES / "clip_0002.mp4"
    times = np.array([30.0, 1.0, 1.06, 17.3, 35.9, 0.0])
    reader = media.FrameReader(path, backend)
    pieces = [reader.read(times[k : k + 2]) for k in range(0, len(times), 2)]
    np.testing.assert_array_equal(np.concatenate(pieces), media.read_frames(path, times, backend))


# --- bad inputs: the same one-sentence errors as the eager path ---------------------------------


def stream_everything(path: Path, backend: str | None = None) -> None:
    lazy = ClipStream(path, SPEC, backend)
    for steps in chunks(lazy.n_steps, 4):
        lazy.patches(steps), lazy.audio(steps)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_and_corrupt_files_are_refused(small_dataset, tmp_path, backend) -> None:
    bad = {"missing": tmp_path / "nowhere.mp4", **_bad_files(small_dataset, tmp_path)}
    for name, path in bad.items():
        with pytest.raises(OmniMemError) as error:  # on opening, or where the damage starts
            stream_everything(path, backend)
        assert str(path) in _one_sentence(error), name


def test_unreadable_audio_short_clips_and_audio_files_are_refused(small_dataset, tmp_path):
    shutil.copy(small_dataset / "clip_0000.mp4", tmp_path / "clip_0000.mp4")
    (tmp_path / "clip_0000.wav").write_bytes(b"this is not a RIFF file at all" * 100)
    short = tmp_path / "short.mp4"
    write_clip(Scene(1.5, 0, (), ()), short, None)
    refusals = {
        tmp_path / "clip_0000.mp4": "not a readable audio file",
        short: "shorter than one",
        small_dataset / "clip_0000.wav": "has no video stream",
    }
    for path, message in refusals.items():
        with pytest.raises(OmniMemError, match=message) as error:
            ClipStream(path, SPEC)
        _one_sentence(error)


def test_evaluation_reads_clips_lazily(trained) -> None:
    model, _ = trained
    stream = read_stream(model, SAMPLES / "clip_0000.mp4")
    assert isinstance(stream, ClipStream) and stream.n_steps == 18
