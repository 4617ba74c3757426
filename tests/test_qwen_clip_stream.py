"""The thinker's lazy clip stream: chunk by chunk, the same tokens as reading the whole clip.

:class:`~omnimem_ref.model.qwen_omni.clip_stream.ThinkerClipStream` decodes only the frames and
audio of the steps asked for; every chunk must equal the eager path's (``ThinkerStream.from_arrays``
of the whole clip's frames and waveform, what ``read_thinker_stream`` returned before): pixels,
metadata and rotary positions exactly, log-mel to float rounding, on a tiny random thinker.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from omnimem_ref import media
from omnimem_ref.clipfiles import write_clip
from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.qwen_omni import QwenOmniThinker, ThinkerStream, VisionSettings
from omnimem_ref.model.qwen_omni.clip_stream import ThinkerClipStream
from omnimem_ref.model.qwen_omni.inputs import SAMPLE_RATE, frame_times, mel_window
from omnimem_ref.model.qwen_omni.loading import read_thinker_stream
from omnimem_ref.model.qwen_omni.tiny import tiny_thinker, tiny_tokenizer, whole_clip_inputs
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.world import AudioEvent, Scene, VisualEvent
from tests.test_media import _one_sentence

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples" / "tiny"
# 128 x 128 frames become 56 x 56: 4 x 4 patches, 2 x 2 video tokens per frame pair.
SETTINGS = VisionSettings(min_pixels=56 * 56, max_pixels=56 * 56)
MEL_TOLERANCE = 1e-6  # log-mel values are order one; measured 0 (the same STFT frames)
RESAMPLED_TOLERANCE = 1e-4  # each window resampled alone; measured ~1e-5
# 17.3 s: eight whole steps and a partial one, which both paths drop (its audio runs past them).
ODD_SCENE = Scene(
    duration=17.3,
    texture_seed=5,
    visual=(VisualEvent("magenta", "square", 6, 2.4, 5.3, (0.01, -0.01)),),
    audio=(AudioEvent("high", True, 1.0, 3.0), AudioEvent("low", False, 5.5, 7.2)),
)
QUESTION, OPTIONS = "what shape was the red object ?", ("circle", "square", "triangle", "cross")


@pytest.fixture(scope="module")
def model() -> QwenOmniThinker:
    tokenizer = tiny_tokenizer()
    return QwenOmniThinker(tiny_thinker(tokenizer), tokenizer, SETTINGS)


def eager(model: QwenOmniThinker, path: Path) -> ThinkerStream:
    """The whole clip read at once: every frame at ``frame_times``, the whole waveform."""
    n_steps = int(media.probe_video(path).duration // 2)
    frames = media.read_frames(path, frame_times(n_steps))
    waveform = media.read_audio(path, SAMPLE_RATE)
    if waveform is None:
        waveform = np.zeros(0, np.float32)  # log_mel pads it with silence
    n_mels = model.config.audio_config.num_mel_bins
    return ThinkerStream.from_arrays(frames, waveform, model.vision, n_mels)


def assert_same_inputs(
    lazy: ThinkerClipStream, whole: ThinkerStream, chunks: list[range], tolerance: float
) -> None:
    """Each chunk's packed pixels equal, its log-mel within ``tolerance``."""
    assert (lazy.n_steps, lazy.grid, lazy.tokens_per_step) == (
        whole.n_steps,
        whole.grid,
        whole.tokens_per_step,
    )
    for steps in chunks:
        (pixels, mel), (want_pixels, want_mel) = lazy.step_inputs(steps), whole.step_inputs(steps)
        assert torch.equal(pixels, want_pixels), steps
        torch.testing.assert_close(mel, want_mel, rtol=0, atol=tolerance)


def assert_same_chunk(
    model: QwenOmniThinker, lazy: ThinkerClipStream, whole: ThinkerStream, steps: range
) -> None:
    with torch.no_grad():
        a, b = lazy.chunk(model, steps, 7, 5), whole.chunk(model, steps, 7, 5)
    for field in ("modality", "seconds", "patch", "position"):
        assert torch.equal(getattr(a.meta, field), getattr(b.meta, field)), field
    assert torch.equal(a.rotary, b.rotary)
    torch.testing.assert_close(a.embeddings, b.embeddings, rtol=0, atol=1e-5)


def test_a_sample_clip_streams_the_same_chunks_as_the_whole_clip(model) -> None:
    """36 s (18 steps), its .wav beside it: chunks from the start, the middle and the end (where
    the STFT reads the clip reflected), then every chunk of 5, going back to the start."""
    path = SAMPLES / "clip_0000.mp4"
    lazy, whole = read_thinker_stream(model, path), eager(model, path)
    assert isinstance(lazy, ThinkerClipStream) and lazy.n_steps == 18
    for steps in (range(7, 11), range(14, 18), range(0, 1)):
        assert_same_chunk(model, lazy, whole, steps)
    every_five = [range(s, min(s + 5, 18)) for s in range(0, 18, 5)]
    assert_same_inputs(lazy, whole, every_five, MEL_TOLERANCE)


def test_a_chunk_decodes_only_its_own_frames_and_audio(model) -> None:
    """Opening decodes nothing; a chunk reads its steps' frames (and those of the next few
    steps, up to the read block) and, after one pass over the audio for its loudest value, the
    samples its log-mel frames read."""
    lazy = read_thinker_stream(model, SAMPLES / "clip_0000.mp4")
    frame_reads: list[np.ndarray] = []
    windows: list[tuple[int, int]] = []
    read, window = lazy._frames.read, lazy._audio.window
    lazy._frames.read = lambda times: frame_reads.append(times) or read(times)  # type: ignore[method-assign]
    lazy._audio.window = lambda a, b: windows.append((a, b)) or window(a, b)  # type: ignore[method-assign]
    with torch.no_grad():
        lazy.chunk(model, range(15, 17), 7, 5)
    assert len(frame_reads) == 1
    np.testing.assert_array_equal(frame_reads[0], frame_times(18)[15 * 4 :])  # to the clip's end
    start, stop = mel_window(range(15, 17))
    assert windows[-1] == (start, stop)  # inside the clip: nothing to reflect
    assert windows[:-1] == [(0, 18 * 32_000)]  # the loudness pass: 18 steps in one block


def test_the_stock_thinkers_whole_clip_inputs_are_the_same_from_either_stream(model) -> None:
    """What notebook 06 checks streaming against: ``whole_clip_inputs`` reads every step of a
    lazy stream as it reads the eager one's tensors."""
    path = SAMPLES / "clip_0001.mp4"
    question, _ = model.prompt_format(model.tokenizer).choice_ids(QUESTION, OPTIONS)
    lazy = whole_clip_inputs(model, read_thinker_stream(model, path), question)
    whole = whole_clip_inputs(model, eager(model, path), question)
    assert lazy.keys() == whole.keys()
    for name, value in whole.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(lazy[name], value, rtol=0, atol=MEL_TOLERANCE)
        else:
            assert lazy[name] == value, name


@pytest.fixture(scope="module")
def odd_clips(tmp_path_factory) -> dict[str, Path]:
    """17.3 s (audio past the last whole step), 12 fps, 160x120, audio at 44.1 kHz (resampled
    window by window): read from a .wav beside it, or alone, from its AAC track."""
    folder = tmp_path_factory.mktemp("odd")
    mp4 = folder / "odd.mp4"
    write_clip(ODD_SCENE, mp4, mp4.with_suffix(".wav"), fps=12, size=(160, 120), sample_rate=44100)
    (folder / "alone").mkdir()
    return {"wav": mp4, "aac-track": Path(shutil.copy(mp4, folder / "alone" / "odd.mp4"))}


@pytest.mark.parametrize("audio", ["wav", "aac-track"])
def test_odd_length_rate_and_size_stream_the_same_chunks(model, odd_clips, audio) -> None:
    lazy, whole = read_thinker_stream(model, odd_clips[audio]), eager(model, odd_clips[audio])
    assert lazy.n_steps == 8 and lazy.merged_grid == (1, 2)  # 28 x 56 pixels
    chunks = [range(5, 8), range(2, 5), range(0, 2), range(3, 4)]
    assert_same_inputs(lazy, whole, chunks, RESAMPLED_TOLERANCE)


def test_the_session_keeps_and_answers_the_same_through_either_stream(model, odd_clips) -> None:
    """OmniMem under a budget, three steps a chunk: the same kept positions in every layer and
    the same answer logits as streaming the whole clip's inputs."""
    path = odd_clips["wav"]
    results = []
    for stream in (read_thinker_stream(model, path), eager(model, path)):
        session = StreamingSession(
            model, model.tokenizer, make_policy("omnimem"), budget=150, steps_per_chunk=3
        )
        session.stream(stream)
        answer = session.answer(QUESTION, OPTIONS)
        assert session.memory.meta is not None and answer.logits is not None
        results.append((session.memory.meta.position, torch.tensor(list(answer.logits.values()))))
    (lazy_kept, lazy_logits), (kept, logits) = results
    assert torch.equal(lazy_kept, kept)
    torch.testing.assert_close(lazy_logits, logits, rtol=0, atol=1e-4)


def test_a_clip_without_audio_streams_silence_and_warns_once(model, tmp_path) -> None:
    mp4 = tmp_path / "mute.mp4"
    write_clip(ODD_SCENE, mp4, None, audio_track=False)
    with pytest.warns(media.NoAudioWarning, match="streamed with silence") as caught:
        lazy = read_thinker_stream(model, mp4)
    assert len(caught) == 1 and not lazy.has_audio
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # streaming warns no more
        mel = lazy.mel(range(lazy.n_steps))
    assert torch.equal(mel, eager(model, mp4).mel)
    assert torch.all(mel == mel[0, 0])  # silence: one value throughout


def test_a_clip_shorter_than_one_step_is_refused_in_one_sentence(model, tmp_path) -> None:
    short = tmp_path / "short.mp4"
    write_clip(Scene(1.5, 0, (), ()), short, None)
    with pytest.raises(OmniMemError, match="shorter than one 2-second chunk") as error:
        read_thinker_stream(model, short)
    assert str(short) in _one_sentence(error)
