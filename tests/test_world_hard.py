"""The general world (``--world hard`` and the knobs): scenes respect their knobs, questions agree
with the scene and with what is drawn and heard, and answers are balanced."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest

from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec
from omnimem_ref.model.checkpoint import DEFAULT_CHECKPOINT
from omnimem_ref.model.tokenizer import build_tokenizer, encode, load_tokenizer, question_text
from omnimem_ref.world import (
    ALL_FAMILIES,
    CLASSIC,
    COLOURS,
    HARD,
    PITCHES,
    SHAPES,
    Question,
    Scene,
    World,
    render_frame,
    render_waveform,
    sample_world_scene,
    world_questions,
)
from omnimem_ref.world.geometry import centre_at, covered_cells, object_mask, object_radius
from omnimem_ref.world.identities import spread_counts
from omnimem_ref.world.presets import check_world
from omnimem_ref.world.scene import STEP_SECONDS, VisualEvent
from omnimem_ref.world.subjects import object_subjects, tone_subjects
from omnimem_ref.world.tones import GAP, SAME_PITCH_GAP
from omnimem_ref.world.vocabulary import COUNT_WORDS, GRID, THIRDS
from tests.world_checks import assert_balanced, assert_evidence_spread

N_SCENES = 400
SPEC = FeatureSpec(step_seconds=STEP_SECONDS)


def _draw(seed: int, world: World = HARD, duration: float | None = None, events: int = 0):
    """Scene and questions of clip ``seed``; ``events`` objects and tones (default: the world's)."""
    rng = np.random.default_rng([seed, 0])
    length = duration or round(float(rng.uniform(*world.duration_range)), 1)
    n_visual, n_audio = (events, events) if events else (world.visual_events, world.audio_events)
    scene = sample_world_scene(rng, length, n_visual, n_audio, world)
    return scene, world_questions(scene, f"clip_{seed}", rng, world)


@pytest.fixture(scope="module")
def many() -> list[tuple[Scene, list[Question]]]:
    return [_draw(seed) for seed in range(N_SCENES)]


def _named(question: Question) -> tuple[str, str, str]:
    """(colour, shape or "", pitch or "") of the subject a question names."""
    words = question.question.split()
    pitch = next((w for w in words if w in PITCHES), "")
    colour = next((w for w in words if w in COLOURS), "")
    after = words[words.index(colour) + 1] if colour else ""
    return colour, after if after in SHAPES else "", pitch


def _instances(scene: Scene, question: Question) -> list[tuple[float, float]]:
    """Every span of the subject ``question`` names, read off the scene."""
    colour, shape, pitch = _named(question)
    if pitch:
        return [(a.onset, a.offset) for a in scene.audio if a.pitch == pitch]
    return [
        (v.onset, v.offset)
        for v in scene.visual
        if v.colour == colour and (not shape or v.shape == shape)
    ]


# --- the knobs --------------------------------------------------------------------------------


def test_objects_have_the_size_and_motion_asked_and_stay_on_screen(many) -> None:
    for scene, _ in many:
        for obj in (*scene.visual, *scene.distractors):
            assert HARD.object_size[0] - 1e-3 <= obj.size <= HARD.object_size[1] + 1e-3
            assert np.hypot(*obj.motion) * GRID == pytest.approx(HARD.motion, abs=2e-3)
            radius = object_radius(obj, 128)
            for t in (obj.onset, obj.offset):
                x, y = centre_at(obj, t, 128)
                assert radius - 0.5 <= x <= 128.5 - radius, obj
                assert radius - 0.5 <= y <= 128.5 - radius, obj


def test_objects_span_several_cells_and_move_across_them(many) -> None:
    """Every object is drawn over two cells or more; most cover a tenth of three or more."""
    spans, touched, moved = [], [], []
    for scene, _ in many[:100]:
        for obj in scene.visual:
            middle = (obj.onset + obj.offset) / 2
            spans.append(len(covered_cells(obj, middle)))
            touched.append(len(covered_cells(obj, middle, min_share=0.005)))
            moved.append(covered_cells(obj, obj.onset) != covered_cells(obj, obj.offset))
    assert min(touched) >= 2 and np.mean(spans) >= 3, Counter(spans)
    assert np.mean(moved) > 0.9


def test_one_colour_takes_several_shapes_and_identities_repeat(many) -> None:
    shared, repeated = 0, 0
    for scene, _ in many:
        shapes: dict[str, set[str]] = {}
        for obj in scene.visual:
            shapes.setdefault(obj.colour, set()).add(obj.shape)
        assert max(len(s) for s in shapes.values()) <= HARD.shapes_per_colour
        shared += max(len(s) for s in shapes.values()) > 1
        counts = [s.count for s in object_subjects(scene)]
        assert sum(counts) == HARD.visual_events and max(counts) <= HARD.object_repeats
        repeated += max(counts) > 1
    assert shared / len(many) > 0.5 and repeated == len(many)


def test_instances_of_one_object_are_separated_by_an_empty_frame(many) -> None:
    for scene, _ in many[:100]:
        times = SPEC.frame_times(scene.duration)
        for subject in object_subjects(scene):
            shown = [any(a <= t < b for a, b in subject.spans) for t in times]
            runs = sum(1 for i, s in enumerate(shown) if s and (i == 0 or not shown[i - 1]))
            assert runs == subject.count, subject


def test_tones_repeat_with_their_durations_and_gaps(many) -> None:
    for scene, _ in many:
        assert sum(a.loud for a in scene.audio) == 1
        for a in scene.audio:
            assert a.offset - a.onset >= HARD.tone_seconds[0] - 1e-3
            assert a.offset - a.onset <= HARD.tone_seconds[1] + 1e-3
        tones = sorted(scene.audio, key=lambda a: a.onset)
        for i, a in enumerate(tones):
            for b in tones[i + 1 :]:
                gap = SAME_PITCH_GAP if a.pitch == b.pitch else GAP
                assert b.onset - a.offset >= gap - 2e-3, (a, b)
        counts = [s.count for s in tone_subjects(scene)]
        assert sum(counts) == HARD.audio_events and max(counts) == HARD.tone_repeats


def test_distractors_are_outside_the_vocabulary_and_never_asked_about(many) -> None:
    vocabulary = set(build_tokenizer().get_vocab())
    for scene, questions in many:
        assert len(scene.distractors) == len(scene.distractor_tones) == HARD.distractors
        names = {d.colour for d in scene.distractors} | {t.pitch for t in scene.distractor_tones}
        assert not names & vocabulary
        assert not any(t.loud for t in scene.distractor_tones)
        for q in questions:
            assert not names & {*q.question.split(), *q.options}


def test_distractors_are_drawn_beneath_the_objects() -> None:
    checked = 0
    for seed in range(40):
        scene, _ = _draw(seed)
        for obj in scene.visual:
            t = (obj.onset + obj.offset) / 2
            if not scene.distractors_at(t):
                continue
            inside = object_mask(obj, t, 128) > 0.999
            drawn = render_frame(scene, t).astype(int)[inside]
            assert np.abs(drawn - COLOURS[obj.colour]).max() <= 1
            checked += 1
    assert checked > 5


def test_background_drifts_so_a_cell_is_never_the_same_twice() -> None:
    """Same cell, frames one step apart, no objects: the hard background changes well beyond
    the sensor noise (pan and lighting); the classic one barely changes."""

    def cell_change(scene: Scene) -> float:
        empty = dataclasses.replace(scene, visual=(), distractors=())
        a, b = (render_frame(empty, t).astype(float) for t in (21.0, 23.0))
        cells = np.abs(a - b).reshape(GRID, 32, GRID, 32, 3).mean(axis=(1, 3, 4))
        return float(cells.min())

    hard = [cell_change(_draw(seed)[0]) for seed in range(10)]
    classic = [cell_change(_draw(seed, CLASSIC, 40.0)[0]) for seed in range(10)]
    assert max(classic) < 3.0  # sensor noise and a 4% brightness swing
    assert np.median(hard) > 2 * max(classic), (hard, classic)


def test_spread_counts_cover_every_value_they_can() -> None:
    assert spread_counts(8, 3, 12) == [1, 2, 3, 1, 1]
    assert sorted(spread_counts(8, 3, 4)) == [1, 2, 2, 3]
    assert spread_counts(64, 16, 4) == [16, 16, 16, 16]
    for total, most, slots in [(10, 4, 4), (30, 5, 24), (64, 6, 12), (1, 3, 4)]:
        counts = spread_counts(total, most, slots)
        assert sum(counts) == total and len(counts) <= slots and max(counts) <= most


# --- questions agree with the scene -------------------------------------------------------------


def test_counting_and_when_answers_match_the_scene(many) -> None:
    for scene, questions in many:
        for q in questions:
            spans = _instances(scene, q)
            if q.family == "counting":
                assert q.answer == COUNT_WORDS[len(spans) - 1], q
                assert sorted(q.evidence_time) == sorted(spans)
            if q.family == "when":
                third = THIRDS.index(q.answer)
                low, high = third * scene.duration / 3, (third + 1) * scene.duration / 3
                assert all(low <= a and b <= high for a, b in spans), q


def test_classic_families_stay_unambiguous_with_shared_colours_and_repeats(many) -> None:
    for scene, questions in many:
        for q in questions:
            if q.family == "visual":  # every object of that colour has the answered shape
                colour = _named(q)[0]
                assert {v.shape for v in scene.visual if v.colour == colour} == {q.answer}
            if q.family == "binding":  # a pitch heard once, inside the one object on screen
                (tone,) = [a for a in scene.audio if a.pitch == _named(q)[2]]
                on_screen = scene.objects_at((tone.onset + tone.offset) / 2)
                assert [v.colour for v in on_screen] == [q.answer]
            if q.family == "audio":
                assert q.answer == next(a.pitch for a in scene.audio if a.loud)
            if q.family == "temporal":  # two objects seen once each; the answer names the first
                words = q.question.split()
                named = [(words[i], words[i + 1]) for i, w in enumerate(words) if w in COLOURS]
                firsts = [
                    min(v.onset for v in scene.visual if (v.colour, v.shape) == n) for n in named
                ]
                counts = [sum((v.colour, v.shape) == n for v in scene.visual) for n in named]
                assert counts == [1, 1]
                first = named[int(np.argmin(firsts))]
                assert q.answer in first


def test_counting_questions_are_answerable_from_the_rendered_media() -> None:
    """Count the named subject blind: runs of frames showing its colour (objects; checked to be
    its shape) or runs of audio frames loud at its pitch (tones)."""
    checked = Counter()
    for seed in range(60):
        scene, questions = _draw(seed, duration=60.0)
        (q,) = [q for q in questions if q.family == "counting"]
        colour, shape, pitch = _named(q)
        if pitch:
            count = _tone_runs(render_waveform(scene), PITCHES[pitch])
        else:
            count = _object_runs(scene, colour, shape)
        assert count == COUNT_WORDS.index(q.answer) + 1, (seed, q)
        checked["tone" if pitch else "object"] += 1
    assert min(checked.values()) >= 10, checked


def _tone_runs(wave: np.ndarray, frequency: float, rate: int = 16000) -> int:
    frames = wave[: len(wave) // 1600 * 1600].reshape(-1, 1600) * np.hanning(1600)
    bin_ = int(round(frequency * 1600 / rate))
    loud = np.abs(np.fft.rfft(frames, axis=1))[:, bin_] > 20
    return int(np.sum(loud[1:] & ~loud[:-1]) + loud[0])


def _object_runs(scene: Scene, colour: str, shape: str) -> int:
    """Runs of frame instants where the subject is drawn; each drawn instance is checked to have
    the subject's shape (its colour's pixels are the object's own mask)."""
    runs, before = 0, False
    for t in SPEC.frame_times(scene.duration):
        frame = render_frame(scene, float(t)).astype(int)
        shown = np.abs(frame - COLOURS[colour]).max(axis=-1) <= 2
        (obj,) = scene.objects_at(float(t)) or [None]
        now = bool(shown.sum() > 200) and obj is not None and obj.shape == shape
        if now:
            assert isinstance(obj, VisualEvent)
            assert np.mean(shown == (object_mask(obj, float(t), 128) > 0.5)) > 0.99
        runs += now and not before
        before = now
    return runs


# --- balance and spread -----------------------------------------------------------------------


def _answers(many, family: str, by_position: bool) -> Counter:
    return Counter(
        q.options.index(q.answer) if by_position else q.answer
        for _, questions in many
        for q in questions
        if q.family == family
    )


@pytest.mark.parametrize(
    ("family", "keys"),
    [
        ("visual", SHAPES),
        ("audio", tuple(PITCHES)),
        ("binding", None),
        ("temporal", None),
        ("counting", COUNT_WORDS[: HARD.tone_repeats]),
        ("when", THIRDS),
    ],
)
def test_answers_are_balanced_over_options(many, family: str, keys) -> None:
    """A model that always picks one option (or one position) must not beat chance."""
    found = _answers(many, family, by_position=keys is None)
    counts = [found[k] for k in (keys or range(max(found) + 1))]
    assert sum(counts) >= 0.8 * N_SCENES and sum(counts) == sum(found.values())
    assert_balanced(counts)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_evidence_is_spread_over_the_clip(many, family: str) -> None:
    """Questions must be about early, middle and late moments alike, or recency would suffice."""
    assert_evidence_spread(many, family)


def test_near_capacity_questions_are_fewer_but_still_right() -> None:
    """64 tones on four pitches all play sixteen times: binding has no pitch heard once, counting
    is asked only when its drawn count exists (docs/world.md: its answers then bunch), and every
    answer still matches the scene."""
    world = HARD.overridden(object_repeats=6, tone_repeats=16)
    families: Counter = Counter()
    for seed in range(50):
        scene, questions = _draw(seed, world, duration=600.0, events=64)
        families.update(q.family for q in questions)
        for q in questions:
            if q.family == "counting":
                assert q.answer == COUNT_WORDS[len(_instances(scene, q)) - 1]
    assert families["visual"] == families["audio"] == 50 and families["counting"] > 0
    assert families["binding"] == 0


# --- presets, knobs, words ----------------------------------------------------------------------


def test_every_question_is_in_the_vocabulary_and_the_shipped_ids_are_kept(many) -> None:
    tokenizer = build_tokenizer()
    for _, questions in many[:50]:
        for q in questions:
            encode(tokenizer, question_text(q.question))
            assert all(len(encode(tokenizer, option)) == 1 for option in q.options)
    shipped = load_tokenizer(DEFAULT_CHECKPOINT).get_vocab()
    assert {w: tokenizer.token_to_id(w) for w in shipped} == shipped


def test_a_knob_away_from_classic_uses_the_general_sampler_with_classic_words() -> None:
    world = CLASSIC.overridden(motion=0.5)
    assert CLASSIC.is_classic and not world.is_classic
    scene, questions = _draw(3, world, duration=40.0)
    assert all(np.hypot(*v.motion) > 0 for v in scene.visual)
    assert [q.family for q in questions][:2] == ["visual", "audio"]
    assert all("object" in q.question for q in questions if q.family in ("visual", "temporal"))


def test_families_knob_chooses_the_questions() -> None:
    world = HARD.overridden(families=("counting", "when"))
    families = {q.family for seed in range(20) for q in _draw(seed, world)[1]}
    assert families == {"counting", "when"}


def test_hard_scenes_are_deterministic_and_survive_json() -> None:
    scene, questions = _draw(5)
    assert _draw(5) == (scene, questions) and _draw(6)[0] != scene
    assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene
    for q in questions:
        assert Question.from_dict(json.loads(json.dumps(q.to_dict()))) == q


def test_long_clips_draw_and_render() -> None:
    """An hour at 64 objects and 64 tones: sampled, asked and rendered (a few frames, all audio)."""
    world = HARD.overridden(object_repeats=6, tone_repeats=16)
    rng = np.random.default_rng(0)
    scene = sample_world_scene(rng, 3600.0, 64, 64, world)
    assert len(scene.visual) == len(scene.audio) == 64
    assert scene.visual[-1].offset > 3000  # objects reach the end of the clip
    assert world_questions(scene, "long", rng, world)
    assert render_frame(scene, 3599.0).shape == (128, 128, 3)
    assert len(render_waveform(scene, 16000)) == 3600 * 16000


@pytest.mark.parametrize(
    ("knobs", "flag"),
    [
        ({"object_size": (0.2, 1.0)}, "--object-size"),
        ({"object_size": (2.0, 1.0)}, "--object-size"),
        ({"motion": 3.0}, "--motion"),
        ({"motion": -1.0}, "--motion"),
        ({"shapes_per_colour": 5}, "--shapes-per-colour"),
        ({"object_repeats": 0}, "--object-repeats"),
        ({"tone_repeats": 17}, "--tone-repeats"),
        ({"tone_seconds": (0.5, 2.0)}, "--tone-seconds"),
        ({"distractors": 65}, "--distractors"),
        ({"pan": float("nan")}, "--pan"),
        ({"lighting": 0.9}, "--lighting"),
        ({"families": ()}, "--families"),
        ({"object_repeats": 1, "tone_repeats": 1}, "--tone-repeats"),
    ],
)
def test_bad_knobs_are_refused_in_one_sentence(knobs, flag) -> None:
    with pytest.raises(OmniMemError, match=flag) as caught:
        check_world(dataclasses.replace(HARD, **knobs))
    assert str(caught.value).count(". ") == 0 and str(caught.value).endswith(".")


def test_the_shipped_model_refuses_new_words_in_one_sentence() -> None:
    """The shipped TinyOmni knows the classic world's words only: a counting question is refused
    with what to do, not a traceback (the command line prints the sentence)."""
    shipped = load_tokenizer(DEFAULT_CHECKPOINT)
    with pytest.raises(OmniMemError, match="--world classic"):
        encode(shipped, question_text("how many times did the high tone play ?"))
