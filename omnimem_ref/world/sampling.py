"""Drawing a scene from any world: the classic sampler for the classic knobs, the general one
otherwise.

The general sampler composes the pieces: identities and their repeat counts
(:mod:`identities`), objects in time and space (:mod:`objects`), tones (:mod:`tones`),
distractors, and the background's pan and lighting. Everything is checked before anything is
drawn, and refused with one sentence that names the flag to change.
"""

from __future__ import annotations

import math

import numpy as np

from omnimem_ref.errors import OmniMemError
from omnimem_ref.world.identities import object_identities, spread_counts
from omnimem_ref.world.objects import place_distractors, place_objects
from omnimem_ref.world.presets import MAX_EVENTS, World, check_world, identity_capacity
from omnimem_ref.world.scene import (
    MAX_DURATION,
    MIN_DURATION,
    STEP_SECONDS,
    Scene,
    check_scene_parameters,
    sample_scene,
)
from omnimem_ref.world.tones import GAP, place_distractor_tones, place_tones
from omnimem_ref.world.vocabulary import COLOURS, GRID

TONE_SHARE = 0.5  # tones, with their gaps, may fill at most this share of a clip (on average)
TONE_DRAWS = 200


def check_parameters(duration: float, n_visual: int, n_audio: int, world: World) -> None:
    """Refuse a clip the world cannot fill, with a sentence that says which flag to change."""
    if world.is_classic:
        check_scene_parameters(duration, n_visual, n_audio)
        return
    check_world(world)
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise OmniMemError(
            f"A clip must last between {MIN_DURATION:g} and {MAX_DURATION:g} seconds, "
            f"got {duration:g}; pass a --duration in that range."
        )
    max_visual, max_audio = identity_capacity(world)
    if not 1 <= n_visual <= max_visual:
        raise OmniMemError(
            f"--visual-events must be between 1 and {max_visual} in this world "
            f"({MAX_EVENTS} at most; raise --object-repeats or --shapes-per-colour for more), "
            f"got {n_visual}."
        )
    if not 1 <= n_audio <= max_audio:
        raise OmniMemError(
            f"--audio-events must be between 1 and {max_audio} in this world "
            f"({MAX_EVENTS} at most; raise --tone-repeats for more), got {n_audio}."
        )
    fit_visual, fit_audio = largest_fit(duration, world)
    if n_visual > fit_visual:
        raise OmniMemError(
            f"{n_visual} objects do not fit in a {duration:g}-second clip (each needs "
            f"{2 * STEP_SECONDS:g} s); use fewer --visual-events or a longer --duration."
        )
    if n_audio > fit_audio:
        raise OmniMemError(
            f"{n_audio} tones do not fit in a {duration:g}-second clip (at most {fit_audio}); "
            "use fewer --audio-events, shorter --tone-seconds or a longer --duration."
        )


def largest_fit(duration: float, world: World) -> tuple[int, int]:
    """The most objects and tones a ``duration``-second clip of this world holds."""
    max_visual, max_audio = identity_capacity(world)
    per_tone = sum(world.tone_seconds) / 2 + GAP
    fit_audio = int(TONE_SHARE * duration // per_tone)
    return min(max_visual, int(duration // STEP_SECONDS) // 2), min(max_audio, fit_audio)


def sample_world_scene(
    rng: np.random.Generator, duration: float, n_visual: int, n_audio: int, world: World
) -> Scene:
    """Draw a scene of ``world`` (the classic sampler, untouched, for the classic knobs)."""
    if world.is_classic:
        return sample_scene(rng, duration, n_visual, n_audio)
    check_parameters(duration, n_visual, n_audio, world)
    counts = rng.permutation(spread_counts(n_visual, world.object_repeats, _slots(n_visual, world)))
    identities = object_identities(rng, len(counts), world.shapes_per_colour)
    plays = [who for who, c in zip(identities, counts, strict=True) for _ in range(int(c))]
    objects = place_objects(rng, duration, plays, world)
    for _ in range(TONE_DRAWS):
        tones = place_tones(rng, duration, n_audio, world, objects)
        if tones is not None:
            break
    else:
        raise OmniMemError(
            f"{n_audio} tones do not fit in a {duration:g}-second clip; "
            "use fewer --audio-events, shorter --tone-seconds or a longer --duration."
        )
    return Scene(
        duration=duration,
        texture_seed=int(rng.integers(2**31)),
        visual=objects,
        audio=tones,
        distractors=place_distractors(rng, duration, world),
        distractor_tones=place_distractor_tones(rng, duration, world),
        pan=_pan(rng, world.pan),
        lighting=world.lighting,
    )


def _slots(n_visual: int, world: World) -> int:
    """How many identities the objects may take: all of them, less one colour's extra shapes
    when the clip still fits, so one colour keeps a single shape (and a "what shape was the red
    object" question)."""
    spare = (len(COLOURS) - 1) * world.shapes_per_colour + 1
    if spare * world.object_repeats >= n_visual:
        return spare
    return len(COLOURS) * world.shapes_per_colour


def _pan(rng: np.random.Generator, cells_per_minute: float) -> tuple[float, float]:
    """A pan velocity in a random direction, in fractions of the frame per second."""
    if cells_per_minute == 0.0:
        return (0.0, 0.0)
    speed = cells_per_minute / GRID / 60.0
    angle = float(rng.uniform(0.0, 2 * math.pi))
    return (round(speed * math.cos(angle), 6), round(speed * math.sin(angle), 6))
