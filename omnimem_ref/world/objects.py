"""Placing objects in the general world: when each is on screen, how big it is, where it goes.

Timing follows the classic rule: the objects questions are about each get their own segment of
the clip (so one is on screen at a time and "what colour was on screen" has one answer), and
switch on and off between frame instants; unlike the classic world, the segments reach the end of
the clip, so each third of it holds as much evidence as the others. Distractors appear anywhere in time, over or between
them, and are drawn beneath them.

Space is where the general world differs: an object is ``--object-size`` grid cells wide, starts
anywhere (not at a cell's centre) and slides ``--motion`` cells in a random direction over its
lifetime, staying whole on screen. So its evidence is spread over several patch cells, which
change from frame to frame.
"""

from __future__ import annotations

import math

import numpy as np

from omnimem_ref.world.presets import World
from omnimem_ref.world.scene import STEP_SECONDS, VisualEvent
from omnimem_ref.world.vocabulary import DISTRACTOR_COLOURS, GRID, SHAPES

OBJECT_STEPS = (3, 6)  # lifetime in steps, as in the classic world
DISTRACTOR_STEPS = (2, 6)


def place_objects(
    rng: np.random.Generator, duration: float, identities: list[tuple[str, str]], world: World
) -> tuple[VisualEvent, ...]:
    """One object per entry of ``identities`` (repeats included), in time order."""
    n_steps = int(duration // STEP_SECONDS)
    n = len(identities)
    bounds = [j * n_steps // n for j in range(n + 1)]  # segments cover the clip to its end
    order = rng.permutation(n)
    events = []
    for j, index in enumerate(order):
        colour, shape = identities[int(index)]
        segment = bounds[j + 1] - bounds[j]
        max_len = max(1, segment - 1)  # keep one empty step between neighbours
        length = int(rng.integers(min(OBJECT_STEPS[0], max_len), min(OBJECT_STEPS[1], max_len) + 1))
        start = bounds[j] + int(rng.integers(0, segment - length))
        events.append(_object(rng, colour, shape, start, length, world))
    return tuple(events)


def place_distractors(
    rng: np.random.Generator, duration: float, world: World
) -> tuple[VisualEvent, ...]:
    """``world.distractors`` objects in colours no question names, anywhere in the clip."""
    n_steps = int(duration // STEP_SECONDS)
    events = []
    for _ in range(world.distractors):
        length = int(rng.integers(DISTRACTOR_STEPS[0], min(DISTRACTOR_STEPS[1], n_steps - 1) + 1))
        start = int(rng.integers(0, n_steps - length))
        colour = str(rng.choice(list(DISTRACTOR_COLOURS)))
        shape = str(rng.choice(SHAPES))
        events.append(_object(rng, colour, shape, start, length, world))
    return tuple(sorted(events, key=lambda e: e.onset))


def _object(
    rng: np.random.Generator, colour: str, shape: str, start: int, length: int, world: World
) -> VisualEvent:
    """An object on from step ``start`` for ``length`` steps, switching between frame instants."""
    onset = STEP_SECONDS * start + float(rng.uniform(0.0, 0.9))
    offset = STEP_SECONDS * (start + length) + float(rng.uniform(0.1, 0.9))
    width = float(rng.uniform(*world.object_size))
    (x, y), (dx, dy) = _path(rng, width, world.motion)
    col, row = min(GRID - 1, int(x)), min(GRID - 1, int(y))
    return VisualEvent(
        colour=colour,
        shape=shape,
        cell=row * GRID + col,
        onset=round(onset, 3),
        offset=round(offset, 3),
        jitter=(round((x - col - 0.5) / GRID, 4), round((y - row - 0.5) / GRID, 4)),
        size=round(width, 3),
        motion=(round(dx / GRID, 4), round(dy / GRID, 4)),
    )


def _path(
    rng: np.random.Generator, width: float, distance: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """A start centre and a displacement (grid cells) of length ``distance`` that keep an object
    ``width`` cells wide inside the frame all the way (``distance <= GRID - width``)."""
    low, high = width / 2, GRID - width / 2
    for _ in range(100):  # almost always the first try; a steep angle can need a few
        angle = float(rng.uniform(0.0, 2 * math.pi))
        dx, dy = distance * math.cos(angle), distance * math.sin(angle)
        if abs(dx) <= high - low and abs(dy) <= high - low:
            break
    else:
        dx, dy = distance, 0.0
    x = float(rng.uniform(max(low, low - dx), min(high, high - dx)))
    y = float(rng.uniform(max(low, low - dy), min(high, high - dy)))
    return (x, y), (dx, dy)
