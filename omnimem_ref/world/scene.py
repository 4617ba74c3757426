"""Sampling a scene: which objects appear and which tones play, and when.

Time is laid on a grid of ``STEP_SECONDS``-long steps, the same steps the model reads the stream in
(one frame per step, taken at the step's midpoint, like Qwen2.5-Omni's 2-second interleaving).
Objects switch on and off between midpoints, so a frame sampled at a midpoint always shows an
object fully or not at all, whatever frame rate the file is written at.

This module holds the scene's data and the *classic* sampler, kept exactly as it was so the
classic world stays byte-identical. The fields added for the general world (object size and
motion, distractors, background pan and lighting) default to the classic values and are left out
of ``to_dict`` when they hold them, so a classic ``scenes.json`` is unchanged too. The general
sampler is :mod:`omnimem_ref.world.sampling`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from omnimem_ref.errors import OmniMemError
from omnimem_ref.world.vocabulary import COLOURS, GRID, PITCHES, SHAPES

STEP_SECONDS = 2.0
MIN_DURATION, MAX_DURATION = 16.0, 3600.0
TONE_SECONDS = (1.5, 3.0)
MIN_TONE_SECONDS = 1.2


@dataclass(frozen=True)
class VisualEvent:
    """A coloured shape shown from ``onset`` to ``offset`` (seconds).

    Its centre starts at grid cell ``cell``'s centre plus ``jitter`` and moves by ``motion`` over
    its lifetime (both as fractions of the frame). ``size`` is its width in grid cells; 0 means
    the classic object, a little smaller than one cell.
    """

    colour: str
    shape: str
    cell: int  # row-major index into the GRID x GRID cells
    onset: float
    offset: float
    jitter: tuple[float, float]  # offset of the centre from the cell's centre, fraction of frame
    size: float = 0.0
    motion: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class AudioEvent:
    """A pure tone of one pitch, loud or soft, from ``onset`` to ``offset`` (seconds)."""

    pitch: str
    loud: bool
    onset: float
    offset: float


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one clip, deterministically.

    ``visual`` and ``audio`` are the events questions are about; ``distractors`` and
    ``distractor_tones`` are drawn and heard too but never asked about (their colours and pitches
    are outside the vocabulary). ``pan`` moves the background texture (fractions of the frame per
    second); ``lighting`` is the relative amplitude of its slow brightness swing.
    """

    duration: float
    texture_seed: int
    visual: tuple[VisualEvent, ...]
    audio: tuple[AudioEvent, ...]
    distractors: tuple[VisualEvent, ...] = ()
    distractor_tones: tuple[AudioEvent, ...] = ()
    pan: tuple[float, float] = (0.0, 0.0)
    lighting: float = 0.04

    def to_dict(self) -> dict:
        """A JSON-ready dict; fields at their classic defaults are left out."""
        return _without_defaults(self)

    @staticmethod
    def from_dict(d: dict) -> Scene:
        return Scene(
            duration=float(d["duration"]),
            texture_seed=int(d["texture_seed"]),
            visual=tuple(_visual_from_dict(v) for v in d["visual"]),
            audio=tuple(AudioEvent(**a) for a in d["audio"]),
            distractors=tuple(_visual_from_dict(v) for v in d.get("distractors", ())),
            distractor_tones=tuple(AudioEvent(**a) for a in d.get("distractor_tones", ())),
            pan=_pair(d.get("pan", (0.0, 0.0))),
            lighting=float(d.get("lighting", 0.04)),
        )

    def objects_at(self, t: float) -> list[VisualEvent]:
        return [v for v in self.visual if v.onset <= t < v.offset]

    def distractors_at(self, t: float) -> list[VisualEvent]:
        return [v for v in self.distractors if v.onset <= t < v.offset]

    def tones_at(self, t: float) -> list[AudioEvent]:
        return [a for a in self.audio if a.onset <= t < a.offset]


def _without_defaults(obj: Any) -> Any:
    """``asdict``, recursively, minus the dataclass fields that hold their default value."""
    if isinstance(obj, tuple):
        return [_without_defaults(x) for x in obj]
    if not hasattr(obj, "__dataclass_fields__"):
        return obj
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.default is not value and f.default != value:
            out[f.name] = _without_defaults(value)
    return out


def _pair(values: Any) -> tuple[float, float]:
    x, y = values
    return float(x), float(y)


def _visual_from_dict(v: dict) -> VisualEvent:
    return VisualEvent(
        **{**v, "jitter": _pair(v["jitter"]), "motion": _pair(v.get("motion", (0.0, 0.0)))}
    )


def check_scene_parameters(duration: float, n_visual: int, n_audio: int) -> None:
    """Refuse impossible parameters with a sentence that says how to fix them."""
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise OmniMemError(
            f"A clip must last between {MIN_DURATION:g} and {MAX_DURATION:g} seconds, "
            f"got {duration:g}; pass a --duration in that range."
        )
    if not 1 <= n_visual <= len(COLOURS):
        raise OmniMemError(
            f"--visual-events must be between 1 and {len(COLOURS)} (one object per colour), "
            f"got {n_visual}."
        )
    if not 1 <= n_audio <= len(PITCHES):
        raise OmniMemError(
            f"--audio-events must be between 1 and {len(PITCHES)} (one tone per pitch), got {n_audio}."
        )
    if int(duration // STEP_SECONDS) < 2 * n_visual:
        raise OmniMemError(
            f"{n_visual} objects do not fit in a {duration:g}-second clip (each needs "
            f"{2 * STEP_SECONDS:g} s); use fewer --visual-events or a longer --duration."
        )


def sample_scene(
    rng: np.random.Generator, duration: float, n_visual: int = 4, n_audio: int = 3
) -> Scene:
    """Draw a scene: objects spread evenly over the clip, tones placed without overlap.

    One tone is placed inside an object's lifetime when one is long enough, so that the
    audio-visual binding question ("which colour was on screen when the high tone played?")
    has an answer.
    """
    check_scene_parameters(duration, n_visual, n_audio)
    visual = _sample_objects(rng, duration, n_visual)
    for _ in range(200):
        audio = _sample_tones(rng, duration, n_audio, visual)
        if audio is not None:
            return Scene(duration, int(rng.integers(2**31)), visual, audio)
    raise OmniMemError(
        f"{n_audio} tones do not fit in a {duration:g}-second clip; "
        "use fewer --audio-events or a longer --duration."
    )


def _sample_objects(
    rng: np.random.Generator, duration: float, n_visual: int
) -> tuple[VisualEvent, ...]:
    n_steps = int(duration // STEP_SECONDS)
    segment = n_steps // n_visual  # each object lives in its own segment: early, middle, late
    colours = rng.choice(list(COLOURS), size=n_visual, replace=False)
    events = []
    for j, colour in enumerate(colours):
        max_len = max(1, segment - 1)  # keep one empty step between neighbours
        length = int(rng.integers(min(3, max_len), min(6, max_len) + 1))
        start = segment * j + int(rng.integers(0, segment - length))
        # Switch on just before the midpoint of `start`, off just before the midpoint after the end.
        onset = STEP_SECONDS * start + float(rng.uniform(0.0, 0.9))
        offset = STEP_SECONDS * (start + length) + float(rng.uniform(0.1, 0.9))
        jitter = (float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02)))
        events.append(
            VisualEvent(
                colour=str(colour),
                shape=str(SHAPES[int(rng.integers(len(SHAPES)))]),
                cell=int(rng.integers(GRID * GRID)),
                onset=round(onset, 3),
                offset=round(offset, 3),
                jitter=(round(jitter[0], 4), round(jitter[1], 4)),
            )
        )
    return tuple(events)


def _sample_tones(
    rng: np.random.Generator, duration: float, n_audio: int, visual: tuple[VisualEvent, ...]
) -> tuple[AudioEvent, ...] | None:
    pitches = rng.choice(list(PITCHES), size=n_audio, replace=False)
    loud_index = int(rng.integers(n_audio))
    spans: list[tuple[float, float]] = []
    for k in range(n_audio):
        length = float(rng.uniform(*TONE_SECONDS))
        inside = k == 0 or rng.random() < 0.5
        span = _place_tone(rng, duration, length, spans, visual if inside else ())
        if span is None:
            span = _place_tone(rng, duration, length, spans, ())
        if span is None:
            return None
        spans.append(span)
    events = [
        AudioEvent(str(p), k == loud_index, round(a, 3), round(b, 3))
        for k, (p, (a, b)) in enumerate(zip(pitches, spans, strict=True))
    ]
    return tuple(sorted(events, key=lambda e: e.onset))


def _place_tone(
    rng: np.random.Generator,
    duration: float,
    length: float,
    taken: list[tuple[float, float]],
    hosts: tuple[VisualEvent, ...],
) -> tuple[float, float] | None:
    """A free [onset, offset) for a tone, inside one of ``hosts`` if any are given."""
    for _ in range(50):
        if hosts:
            host = hosts[int(rng.integers(len(hosts)))]
            room = host.offset - host.onset - 0.4
            tone = min(length, room)
            if tone < MIN_TONE_SECONDS:
                continue
            onset = host.onset + 0.2 + float(rng.uniform(0.0, room - tone))
        else:
            tone = length
            onset = float(rng.uniform(0.5, duration - tone - 0.5))
        offset = onset + tone
        if all(offset + 0.5 <= a or onset >= b + 0.5 for a, b in taken):
            return onset, offset
    return None
