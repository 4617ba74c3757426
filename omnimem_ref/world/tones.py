"""Placing tones in the general world: pitches that repeat, tones of different lengths, and
distractor tones at pitches no question names.

A pitch plays up to ``--tone-repeats`` times (counts spread as in :mod:`identities`), each tone
``--tone-seconds`` long. Tones of different pitches keep half a second apart; two tones of the
same pitch keep ``SAME_PITCH_GAP`` apart, so at least one whole audio token (one second) lies
between them and they can be counted from the stream. Exactly one tone is loud. One tone of a
pitch that plays once is placed inside an object's lifetime, when one is long enough, so the
binding question has an answer. Distractor tones are soft and go anywhere, overlaps included.
"""

from __future__ import annotations

import numpy as np

from omnimem_ref.world.identities import spread_counts
from omnimem_ref.world.presets import World
from omnimem_ref.world.scene import AudioEvent, VisualEvent
from omnimem_ref.world.vocabulary import DISTRACTOR_PITCHES, PITCHES

GAP = 0.5  # seconds between tones of different pitches
SAME_PITCH_GAP = 2.0  # seconds between two tones of one pitch
HOST_MARGIN = 0.2  # a hosted tone starts and ends this far inside its object's lifetime
TRIES = 50


def place_tones(
    rng: np.random.Generator,
    duration: float,
    n_audio: int,
    world: World,
    objects: tuple[VisualEvent, ...],
) -> tuple[AudioEvent, ...] | None:
    """``n_audio`` tones in time order, or None if this draw did not fit (the caller redraws)."""
    counts = spread_counts(n_audio, world.tone_repeats, len(PITCHES))
    pitches = [str(p) for p in rng.permutation(list(PITCHES))[: len(counts)]]
    plays = [p for p, c in zip(pitches, counts, strict=True) for _ in range(c)]
    loud_pitch = pitches[int(rng.integers(len(pitches)))]
    loud_index = plays.index(loud_pitch) + int(rng.integers(plays.count(loud_pitch)))
    once = [i for i, p in enumerate(plays) if plays.count(p) == 1]
    bound = once[int(rng.integers(len(once)))] if once else -1
    first = [bound] if bound >= 0 else []  # the bound tone first, while objects are still free
    order = first + [int(i) for i in rng.permutation(len(plays)) if i != bound]
    placed: dict[int, tuple[float, float]] = {}
    for i in order:
        length = float(rng.uniform(*world.tone_seconds))
        taken = [(plays[j], span) for j, span in placed.items()]
        hosts = objects if i == bound else ()
        span = _place(rng, duration, length, plays[i], taken, hosts, world.tone_seconds[0])
        if span is None and hosts:
            span = _place(rng, duration, length, plays[i], taken, (), world.tone_seconds[0])
        if span is None:
            return None
        placed[i] = span
    events = [
        AudioEvent(plays[i], i == loud_index, round(a, 3), round(b, 3))
        for i, (a, b) in placed.items()
    ]
    return tuple(sorted(events, key=lambda e: e.onset))


def place_distractor_tones(
    rng: np.random.Generator, duration: float, world: World
) -> tuple[AudioEvent, ...]:
    """``world.distractors`` soft tones at pitches no question names, anywhere in the clip."""
    events = []
    for _ in range(world.distractors):
        length = float(rng.uniform(*world.tone_seconds))
        onset = float(rng.uniform(0.5, duration - length - 0.5))
        pitch = str(rng.choice(list(DISTRACTOR_PITCHES)))
        events.append(AudioEvent(pitch, False, round(onset, 3), round(onset + length, 3)))
    return tuple(sorted(events, key=lambda e: e.onset))


def _place(
    rng: np.random.Generator,
    duration: float,
    length: float,
    pitch: str,
    taken: list[tuple[str, tuple[float, float]]],
    hosts: tuple[VisualEvent, ...],
    shortest: float,
) -> tuple[float, float] | None:
    """A free [onset, offset) for a tone, inside one of ``hosts`` if any are given."""
    for _ in range(TRIES):
        if hosts:
            host = hosts[int(rng.integers(len(hosts)))]
            room = host.offset - host.onset - 2 * HOST_MARGIN
            tone = min(length, room)
            if tone < shortest:
                continue
            onset = host.onset + HOST_MARGIN + float(rng.uniform(0.0, room - tone))
        else:
            tone = length
            onset = float(rng.uniform(0.5, duration - tone - 0.5))
        offset = onset + tone
        if all(_apart((onset, offset), span, p == pitch) for p, span in taken):
            return onset, offset
    return None


def _apart(a: tuple[float, float], b: tuple[float, float], same_pitch: bool) -> bool:
    gap = SAME_PITCH_GAP if same_pitch else GAP
    return a[1] + gap <= b[0] or b[1] + gap <= a[0]
