"""Reading real files: events found at their recorded times, any format accepted, bad files refused.

The dataset is written by the package's own writer (``small_dataset`` in conftest.py) and read
back through both video backends, librosa (the .wav) and PyAV (the .mp4's AAC track).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest

from omnimem_ref import media
from omnimem_ref.clipfiles import write_clip
from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec, frame_patches, log_mel
from omnimem_ref.world import (
    COLOURS,
    PITCHES,
    AudioEvent,
    Scene,
    VisualEvent,
    render_frame,
    render_waveform,
)
from omnimem_ref.world.render import NOISE_STD, object_centre

HAS_DECORD = importlib.util.find_spec("decord") is not None  # no wheel on aarch64 / macOS
BACKENDS = [
    pytest.param("decord", marks=pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")),
    "pyav",
]
SPEC = FeatureSpec()
SR = SPEC.sample_rate


def _clips(small_dataset: Path, small_scenes: dict) -> list[tuple[Path, Scene]]:
    return [(small_dataset / f"{name}.mp4", scene) for name, scene in small_scenes.items()]


def _centre_colour(frame: np.ndarray, x: float, y: float) -> np.ndarray:
    """Mean colour of the 3x3 pixels around (x, y): robust to codec noise."""
    xi, yi = int(x), int(y)
    return frame[yi - 1 : yi + 2, xi - 1 : xi + 2].reshape(-1, 3).astype(float).mean(axis=0)


# --- round trip: every recorded event is where and when the scene says --------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_objects_appear_at_their_recorded_times(small_dataset, small_scenes, backend) -> None:
    for mp4, scene in _clips(small_dataset, small_scenes):
        for obj in scene.visual:
            # Just inside and just outside each edge: more than one frame (1/8 s) away from it.
            times = [obj.onset - 0.2, obj.onset + 0.2, obj.offset - 0.2, obj.offset + 0.2]
            times = [t for t in times if 0 <= t < scene.duration]
            frames = media.read_frames(mp4, times, backend=backend)
            x, y = object_centre(obj, 128)
            for t, frame in zip(times, frames, strict=True):
                seen = _centre_colour(frame, x, y)
                expected = _centre_colour(render_frame(scene, t), x, y)
                assert np.abs(seen - expected).max() < 20, (t, seen, expected)
                distance = np.abs(seen - COLOURS[obj.colour]).max()
                if obj.onset <= t < obj.offset:
                    assert distance < 30, (obj, t, seen)
                elif not scene.objects_at(t):  # background there
                    assert distance > 60, (obj, t, seen)


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_clip_samples_one_frame_per_step_midpoint(
    small_dataset, small_scenes, backend
) -> None:
    for mp4, scene in _clips(small_dataset, small_scenes):
        clip = media.load_clip(mp4, SPEC, backend=backend)
        times = SPEC.frame_times(scene.duration)
        assert clip.frames.shape == (len(times), 128, 128, 3) and clip.frames.dtype == np.uint8
        assert clip.duration == pytest.approx(scene.duration, abs=0.1)
        rendered = np.stack([render_frame(scene, t) for t in times])
        assert np.abs(clip.frames.astype(float) - rendered).mean() < 4  # codec noise only


@pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
def test_both_backends_decode_the_same_frames(small_dataset) -> None:
    mp4 = small_dataset / "clip_0000.mp4"
    times = [0.0, 5.3, 1.0, 23.9, 100.0]  # unsorted, and past the end (-> last frame)
    a, b = (media.read_frames(mp4, times, backend=name) for name in ("decord", "pyav"))
    assert a.shape == b.shape == (5, 128, 128, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def _tone_check(wave: np.ndarray, scene: Scene) -> None:
    """Each tone: dominant frequency = its pitch, energy well above noise; silence elsewhere."""
    quiet = np.ones(len(wave), dtype=bool)
    for tone in scene.audio:
        segment = wave[int((tone.onset + 0.1) * SR) : int((tone.offset - 0.1) * SR)]
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
        peak = np.fft.rfftfreq(len(segment), 1 / SR)[spectrum.argmax()]
        assert abs(peak - PITCHES[tone.pitch]) < 5, (tone, peak)
        assert np.sqrt(np.mean(segment**2)) > 4 * NOISE_STD, tone
        quiet[max(0, int((tone.onset - 0.15) * SR)) : int((tone.offset + 0.15) * SR)] = False
    gaps = wave[quiet][: len(wave[quiet]) // SR * SR].reshape(-1, SR)  # one-second windows
    assert len(gaps) > 0
    assert np.sqrt(np.mean(gaps**2, axis=1)).max() < 1.5 * NOISE_STD


def test_tones_in_the_wav_are_at_their_recorded_times(small_dataset, small_scenes) -> None:
    for mp4, scene in _clips(small_dataset, small_scenes):
        wave = media.read_audio(mp4, SR)  # picks the .wav beside the .mp4
        assert wave is not None and wave.dtype == np.float32
        assert len(wave) == round(scene.duration * SR)
        _tone_check(wave, scene)


def test_tones_in_the_mp4_audio_track_are_at_their_recorded_times(
    small_dataset, small_scenes, tmp_path
) -> None:
    for mp4, scene in _clips(small_dataset, small_scenes):
        alone = shutil.copy(mp4, tmp_path / mp4.name)  # no .wav beside it: decode the AAC track
        wave = media.read_audio(alone, SR)
        assert wave is not None
        assert len(wave) == pytest.approx(scene.duration * SR, abs=2048)  # AAC pads the end
        _tone_check(wave[: round(scene.duration * SR)], scene)


# --- features: files and rendered arrays give the same model inputs -----------------------------


def test_frame_patches_of_decoded_frames_match_rendered_ones(small_dataset, small_scenes) -> None:
    mp4, scene = _clips(small_dataset, small_scenes)[0]
    clip = media.load_clip(mp4, SPEC)
    rendered = np.stack([render_frame(scene, t) for t in SPEC.frame_times(scene.duration)])
    diff = (frame_patches(clip.frames, SPEC) - frame_patches(rendered, SPEC)).abs()
    assert diff.mean() < 0.02 and diff.mean(dim=-1).max() < 0.05


def test_log_mel_of_the_wav_matches_the_rendered_waveform(small_dataset, small_scenes) -> None:
    mp4, scene = _clips(small_dataset, small_scenes)[0]
    clip = media.load_clip(mp4, SPEC)
    np.testing.assert_allclose(
        log_mel(clip.waveform, SPEC), log_mel(render_waveform(scene, SR), SPEC), atol=2e-3
    )


# --- any resolution, frame rate and sample rate ------------------------------------------------


# A short hand-made scene: quick to write at a high frame rate and resolution.
ODD_SCENE = Scene(
    duration=8.0,
    texture_seed=5,
    visual=(VisualEvent("magenta", "square", 6, 2.4, 5.3, (0.01, -0.01)),),
    audio=(AudioEvent("high", True, 1.0, 3.0), AudioEvent("low", False, 5.5, 7.2)),
)


def test_any_resolution_frame_rate_and_sample_rate(tmp_path) -> None:
    scene = ODD_SCENE
    mp4 = tmp_path / "odd.mp4"
    write_clip(scene, mp4, tmp_path / "odd_44k.wav", fps=24, size=(320, 240), sample_rate=44100)
    info = media.probe_video(mp4)
    assert (info.width, info.height, info.has_audio) == (320, 240, True)
    with av.open(str(mp4)) as container:
        assert container.streams.video[0].average_rate == 24
        assert container.streams.audio[0].rate == 44100
    clip = media.load_clip(mp4, SPEC)  # no same-stem .wav: the 44.1 kHz AAC track is resampled
    assert clip.frames.shape == (len(SPEC.frame_times(scene.duration)), 240, 320, 3)
    assert clip.sample_rate == SR
    _tone_check(clip.waveform[: round(scene.duration * SR)], scene)
    rendered = np.stack([render_frame(scene, t) for t in SPEC.frame_times(scene.duration)])
    diff = (frame_patches(clip.frames, SPEC) - frame_patches(rendered, SPEC)).abs()
    assert diff.mean() < 0.03
    wav = media.read_audio(tmp_path / "odd_44k.wav", SR)
    assert wav is not None and len(wav) == round(scene.duration * SR)
    _tone_check(wav, scene)


# --- backend selection ---------------------------------------------------------------------------


def test_backend_selection(monkeypatch) -> None:
    monkeypatch.delenv(media.BACKEND_ENV, raising=False)
    assert media.video_backend("pyav") == "pyav"
    monkeypatch.setenv(media.BACKEND_ENV, "pyav")
    assert media.video_backend() == "pyav"
    if HAS_DECORD:
        assert media.video_backend("decord") == "decord"  # the argument wins over the environment
    monkeypatch.setenv(media.BACKEND_ENV, "gstreamer")
    with pytest.raises(OmniMemError, match="Unknown video backend"):
        media.video_backend()


def test_without_decord_auto_falls_back_to_pyav(monkeypatch) -> None:
    monkeypatch.delenv(media.BACKEND_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` fail
    assert media.video_backend() == "pyav"
    with pytest.raises(OmniMemError, match="decord is not installed"):
        media.video_backend("decord")


# --- bad inputs: one sentence that names the problem ---------------------------------------------


def _one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".")
    return message


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_path(tmp_path, backend) -> None:
    with pytest.raises(OmniMemError, match="There is no file") as error:
        media.load_clip(tmp_path / "nowhere.mp4", SPEC, backend=backend)
    _one_sentence(error)
    with pytest.raises(OmniMemError, match="There is no file"):
        media.read_frames(tmp_path / "nowhere.mp4", [1.0], backend=backend)


def _remux_faststart(src: Path, dst: Path) -> None:
    """Copy ``src`` with its index first (as web videos are): truncating it keeps it openable."""
    with (
        av.open(str(src)) as inp,
        av.open(str(dst), "w", options={"movflags": "+faststart"}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)


def _bad_files(small_dataset: Path, tmp_path: Path) -> dict[str, Path]:
    good = (small_dataset / "clip_0000.mp4").read_bytes()
    files = {
        "random bytes": np.random.default_rng(0).bytes(5000),
        "truncated": good[: len(good) // 3],
        "empty": b"",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.mp4"
        paths[name].write_bytes(data)
    _remux_faststart(small_dataset / "clip_0000.mp4", tmp_path / "faststart.mp4")
    data = (tmp_path / "faststart.mp4").read_bytes()
    paths["truncated after its index"] = tmp_path / "truncated_faststart.mp4"
    paths["truncated after its index"].write_bytes(data[: len(data) // 2])
    return paths


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_videos_are_refused(small_dataset, tmp_path, backend) -> None:
    for name, path in _bad_files(small_dataset, tmp_path).items():
        with pytest.raises(OmniMemError) as error:
            media.load_clip(path, SPEC, backend=backend)
        message = _one_sentence(error)
        assert str(path) in message, name


def test_a_wav_that_is_not_audio_is_refused(small_dataset, tmp_path) -> None:
    fake = tmp_path / "clip_0000.wav"
    fake.write_bytes(b"this is not a RIFF file at all" * 100)
    with pytest.raises(OmniMemError, match="not a readable audio file") as error:
        media.read_audio(fake, SR)
    _one_sentence(error)
    shutil.copy(small_dataset / "clip_0000.mp4", tmp_path / "clip_0000.mp4")
    with pytest.raises(OmniMemError, match="not a readable audio file"):  # the .wav beside it
        media.load_clip(tmp_path / "clip_0000.mp4", SPEC)


def test_an_audio_file_is_not_a_video(small_dataset) -> None:
    with pytest.raises(OmniMemError, match="has no video stream"):
        media.load_clip(small_dataset / "clip_0000.wav", SPEC)


def test_a_clip_without_audio_loads_with_silence_and_a_warning(small_scenes, tmp_path) -> None:
    scene = small_scenes["clip_0001"]
    mp4 = tmp_path / "mute.mp4"
    write_clip(scene, mp4, None, audio_track=False)
    assert media.read_audio(mp4, SR) is None
    with pytest.warns(media.NoAudioWarning, match="cannot be answered"):
        clip = media.load_clip(mp4, SPEC)
    assert not clip.has_audio
    assert len(clip.waveform) == round(scene.duration * SR) and not clip.waveform.any()
    assert clip.frames.shape[0] == len(SPEC.frame_times(scene.duration))


def test_a_clip_shorter_than_one_step_is_refused(tmp_path) -> None:
    mp4 = tmp_path / "short.mp4"
    write_clip(Scene(1.5, 0, (), ()), mp4, None)
    with pytest.raises(OmniMemError, match="shorter than one") as error:
        media.load_clip(mp4, SPEC)
    _one_sentence(error)


def test_writer_leaves_no_partial_file_on_error(small_scenes, tmp_path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("omnimem_ref.clipfiles.sf.write", broken)
    with pytest.raises(RuntimeError):
        write_clip(small_scenes["clip_0000"], tmp_path / "a.mp4", tmp_path / "a.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]  # the finished one only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert media.probe_video(tmp_path / "a.mp4").has_audio
