"""Properties of the synthetic world that the questions and the model rely on."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec
from omnimem_ref.world import (
    COLOURS,
    FAMILIES,
    PITCHES,
    SHAPES,
    Question,
    Scene,
    make_questions,
    render_frame,
    render_waveform,
    sample_scene,
)
from omnimem_ref.world.render import background, object_centre
from omnimem_ref.world.scene import STEP_SECONDS, check_scene_parameters
from tests.world_checks import assert_balanced, assert_evidence_spread

N_SCENES = 400


def _draw(seed: int) -> tuple[Scene, list[Question]]:
    rng = np.random.default_rng([seed, 0])
    scene = sample_scene(rng, round(float(rng.uniform(30, 60)), 1))
    return scene, make_questions(scene, f"clip_{seed}", rng)


@pytest.fixture(scope="module")
def many() -> list[tuple[Scene, list[Question]]]:
    return [_draw(seed) for seed in range(N_SCENES)]


def test_events_lie_inside_the_clip_and_do_not_overlap(many) -> None:
    for scene, _ in many:
        for events in (scene.visual, scene.audio):
            spans = sorted((e.onset, e.offset) for e in events)
            assert all(0 <= a < b <= scene.duration for a, b in spans)
            assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))


def test_every_object_is_seen_whole_at_some_frame_instant(many) -> None:
    spec = FeatureSpec(step_seconds=STEP_SECONDS)
    for scene, _ in many:
        times = spec.frame_times(scene.duration)
        for obj in scene.visual:
            assert np.any((obj.onset <= times) & (times < obj.offset)), obj
            # Switching happens between midpoints, never at one: no half-shown object.
            edges = np.array([obj.onset, obj.offset])
            assert np.abs(times[:, None] - edges[None, :]).min() >= 0.05


def test_each_question_has_its_answer_among_distinct_options(many) -> None:
    for _, questions in many:
        assert [q.family for q in questions] == [
            f for f in FAMILIES if f in {q.family for q in questions}
        ]
        for q in questions:
            assert q.answer in q.options
            assert len(set(q.options)) == len(q.options)
            assert all(a < b for a, b in q.evidence_time)


def test_answers_agree_with_the_scene(many) -> None:
    for scene, questions in many:
        by_family = {q.family: q for q in questions}
        (loud,) = [a for a in scene.audio if a.loud]
        assert by_family["audio"].answer == loud.pitch
        if "binding" in by_family:
            (tone, obj) = by_family["binding"].evidence_time
            mid = (tone[0] + tone[1]) / 2
            assert by_family["binding"].answer in {v.colour for v in scene.objects_at(mid)}
            assert obj[0] <= tone[0] and tone[1] <= obj[1]
        if "temporal" in by_family:
            first = min(scene.visual, key=lambda v: v.onset)
            colours = [v.colour for v in scene.visual if v.colour in by_family["temporal"].options]
            assert by_family["temporal"].answer == colours[0]
            assert first.onset <= by_family["temporal"].evidence_time[0][0]


def _answer_counts(many, family: str, options: tuple[str, ...] | None) -> list[int]:
    """How often each option (or each option position, when ``options`` is None) is the answer."""
    counts: Counter = Counter()
    for _, questions in many:
        for q in questions:
            if q.family == family:
                counts[q.answer if options else q.options.index(q.answer)] += 1
    keys = options if options else range(max(counts) + 1)
    return [counts[k] for k in keys]


@pytest.mark.parametrize(
    ("family", "options"),
    [("visual", SHAPES), ("audio", tuple(PITCHES)), ("binding", None), ("temporal", None)],
)
def test_answers_are_balanced_over_options(many, family: str, options) -> None:
    """A model that always picks one option (or one position) must not beat chance."""
    counts = _answer_counts(many, family, options)
    assert sum(counts) >= 100
    assert_balanced(counts)


@pytest.mark.parametrize("family", FAMILIES)
def test_evidence_is_spread_over_the_clip(many, family: str) -> None:
    """Questions must be about early, middle and late moments alike, or recency would suffice."""
    assert_evidence_spread(many, family)


def test_sampling_is_deterministic() -> None:
    assert _draw(3) == _draw(3)
    assert _draw(3) != _draw(4)


def test_scene_and_question_survive_json() -> None:
    scene, questions = _draw(5)
    assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene
    for q in questions:
        assert Question.from_dict(json.loads(json.dumps(q.to_dict()))) == q


def test_rendered_frames_show_each_object_only_during_its_event() -> None:
    scene, _ = _draw(6)
    for obj in scene.visual:
        x, y = (int(c) for c in object_centre(obj, 128))
        during = render_frame(scene, (obj.onset + obj.offset) / 2)[y, x]
        assert np.abs(during.astype(int) - COLOURS[obj.colour]).max() <= 1
        before = render_frame(scene, obj.onset - 0.05)[y, x].astype(float)
        assert np.abs(before - background(scene.texture_seed, 128)[y, x]).max() < 25
    assert np.array_equal(render_frame(scene, 7.0), render_frame(scene, 7.0))


def test_rendered_waveform_has_each_tone_at_its_pitch() -> None:
    scene, _ = _draw(7)
    wave = render_waveform(scene, 16000)
    assert wave.dtype == np.float32 and len(wave) == round(scene.duration * 16000)
    for tone in scene.audio:
        segment = wave[int((tone.onset + 0.1) * 16000) : int((tone.offset - 0.1) * 16000)]
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
        peak = np.fft.rfftfreq(len(segment), 1 / 16000)[spectrum.argmax()]
        assert abs(peak - PITCHES[tone.pitch]) < 5


@pytest.mark.parametrize(
    ("duration", "n_visual", "n_audio"),
    [(0, 4, 3), (-10, 4, 3), (30, 0, 3), (30, 4, 0), (30, len(COLOURS) + 1, 3), (16, 5, 3)],
)
def test_impossible_parameters_are_refused(duration, n_visual, n_audio) -> None:
    with pytest.raises(OmniMemError):
        check_scene_parameters(duration, n_visual, n_audio)


# Scenes and questions the generator drew before worlds existed (sha256 of their JSON, computed
# with that code): the classic world must keep drawing exactly these.
CLASSIC_DIGEST = "bb9e843608a2f7b539c34d543bb505b79a0b2b5bbe3627db29c414a7b7c9faa8"


def test_classic_world_draws_what_the_generator_drew_before_worlds() -> None:
    import hashlib

    from omnimem_ref.dataset import _sample_clip
    from omnimem_ref.world import CLASSIC

    rows = []
    for seed in range(100):
        for args in [(None, 4, 3), (24.0, 4, 3), (120.0, 6, 4), (17.0, 2, 2)]:
            scene, questions = _sample_clip(seed, seed % 5, *args, world=CLASSIC)
            rows.append([scene.to_dict(), [q.to_dict() for q in questions]])
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    assert digest == CLASSIC_DIGEST


def test_clips_may_last_an_hour() -> None:
    check_scene_parameters(3600, 4, 3)
    with pytest.raises(OmniMemError, match="3600"):
        check_scene_parameters(3601, 4, 3)
