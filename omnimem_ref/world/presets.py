"""World presets and difficulty knobs: what kind of world ``omnimem generate`` draws clips from.

The original world (``classic``) hands a compression policy the answer: every object fills one
patch cell of the model's 4 x 4 grid and never moves, one object per colour, one tone per pitch,
a background that barely changes. A policy that groups tokens by patch cell finds the evidence
for free, and a model answers everything from one token per event.

``hard`` turns each of those simplifications into a knob (:class:`World`), so that no two tokens
are exactly redundant and the evidence for a question is spread over several cells, several frames
and several instances:

- objects span several cells and move along a path (``object_size``, ``motion``);
- one colour takes several shapes, so an object is named by colour *and* shape
  (``shapes_per_colour``), and an object or a tone recurs (``object_repeats``, ``tone_repeats``);
- tones last longer or shorter (``tone_seconds``);
- distractor objects and tones that no question refers to (``distractors``);
- the background pans and its lighting changes (``pan``, ``lighting``);
- two more question families, ``counting`` and ``when`` (``families``).

``classic`` stays the default until a TinyOmni trained on ``hard`` ships: every shipped number is
measured on it, and it is drawn by the original code, byte for byte. Any knob away from its classic
value switches to the general sampler (:mod:`omnimem_ref.world.sampling`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from omnimem_ref.errors import OmniMemError
from omnimem_ref.world.vocabulary import COLOURS, GRID, PITCHES, SHAPES

FAMILIES: tuple[str, ...] = ("visual", "audio", "binding", "temporal")
NEW_FAMILIES: tuple[str, ...] = ("counting", "when")
ALL_FAMILIES: tuple[str, ...] = FAMILIES + NEW_FAMILIES

MAX_EVENTS = 64  # --visual-events, --audio-events and --distractors
MAX_REPEATS = 16  # the largest count a counting question can have as its answer
OBJECT_SIZE_LIMITS = (0.5, 3.0)  # grid cells
TONE_SECONDS_LIMITS = (1.0, 8.0)  # a tone shorter than 1 s may miss every audio token's midpoint
PAN_LIMIT = 30.0  # grid cells per minute
LIGHTING_LIMIT = 0.5  # brightness swings by at most +-50%
CLASSIC_OBJECT_SIZE = 0.68  # grid cells: render.OBJECT_RADIUS (0.085 of the frame) x 2 x GRID


@dataclass(frozen=True)
class World:
    """The knobs of one world. ``preset`` names the preset it started from (for the command line).

    Sizes and distances are in grid cells (the frame is ``GRID`` cells wide); ``pan`` is in cells
    per minute; ``lighting`` is the relative amplitude of the brightness swing.
    """

    preset: str = "classic"
    visual_events: int = 4  # objects per clip (instances, repeats included; distractors apart)
    audio_events: int = 3  # tones per clip (instances, repeats included; distractors apart)
    duration_range: tuple[float, float] = (30.0, 60.0)  # when no --duration is given
    object_size: tuple[float, float] = (CLASSIC_OBJECT_SIZE, CLASSIC_OBJECT_SIZE)
    motion: float = 0.0
    shapes_per_colour: int = 1
    object_repeats: int = 1
    tone_repeats: int = 1
    tone_seconds: tuple[float, float] = (1.5, 3.0)
    distractors: int = 0
    pan: float = 0.0
    lighting: float = 0.04
    families: tuple[str, ...] = FAMILIES

    def scene_knobs(self) -> dict[str, Any]:
        """The knobs that shape a scene (not its name, event counts or duration)."""
        skip = {"preset", "visual_events", "audio_events", "duration_range"}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    @property
    def is_classic(self) -> bool:
        """True when the original sampler draws this world (byte-identical classic clips)."""
        return self.scene_knobs() == CLASSIC.scene_knobs()

    def overridden(self, **knobs: Any) -> World:
        """This world with the knobs that are not None replaced."""
        return replace(self, **{k: v for k, v in knobs.items() if v is not None})

    def differences(self) -> dict[str, Any]:
        """Knobs that differ from this world's preset, as the command line spells them."""
        base = PRESETS[self.preset]
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("preset", "visual_events", "audio_events", "duration_range")
            and getattr(self, f.name) != getattr(base, f.name)
        }


CLASSIC = World()
HARD = World(
    preset="hard",
    visual_events=8,
    audio_events=8,
    duration_range=(60.0, 120.0),
    object_size=(1.5, 2.0),
    motion=1.5,
    shapes_per_colour=2,
    object_repeats=3,
    tone_repeats=3,
    tone_seconds=(1.0, 4.0),
    distractors=4,
    pan=3.0,
    lighting=0.25,
    families=ALL_FAMILIES,
)
PRESETS: dict[str, World] = {"classic": CLASSIC, "hard": HARD}


def preset(name: str) -> World:
    """The preset called ``name``, or one sentence listing the ones there are."""
    if name not in PRESETS:
        raise OmniMemError(
            f"There is no world called {name!r}; choose one of {', '.join(PRESETS)}."
        )
    return PRESETS[name]


def parse_range(text: str, flag: str) -> tuple[float, float]:
    """``"2"`` -> (2, 2) and ``"1.5-2.5"`` -> (1.5, 2.5), for range-valued knobs."""
    parts = text.split("-")
    try:
        low, high = (float(parts[0]), float(parts[-1])) if len(parts) <= 2 else (math.nan,) * 2
    except ValueError:
        low = high = math.nan
    if not low <= high:
        raise OmniMemError(f"{flag} takes one number or MIN-MAX (such as 1.5-2.5), got {text!r}.")
    return low, high


def parse_families(text: str) -> tuple[str, ...]:
    """``"visual,counting"`` -> the families in their canonical order."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_FAMILIES]
    if unknown or not names:
        raise OmniMemError(
            f"--families takes a comma-separated list of {', '.join(ALL_FAMILIES)}, got {text!r}."
        )
    return tuple(f for f in ALL_FAMILIES if f in names)


def check_world(world: World) -> None:
    """Refuse knob values no scene can have, with one sentence that says how to fix them."""
    _check_range("--object-size", world.object_size, OBJECT_SIZE_LIMITS, "grid cells")
    _check_range("--tone-seconds", world.tone_seconds, TONE_SECONDS_LIMITS, "seconds")
    room = GRID - world.object_size[1]
    _check_number("--motion", world.motion, 0.0, room, "grid cells (objects must stay on screen)")
    _check_number("--shapes-per-colour", world.shapes_per_colour, 1, len(SHAPES), "")
    _check_number("--object-repeats", world.object_repeats, 1, MAX_REPEATS, "")
    _check_number("--tone-repeats", world.tone_repeats, 1, MAX_REPEATS, "")
    _check_number("--distractors", world.distractors, 0, MAX_EVENTS, "")
    _check_number("--pan", world.pan, 0.0, PAN_LIMIT, "grid cells per minute")
    _check_number("--lighting", world.lighting, 0.0, LIGHTING_LIMIT, "")
    if not world.families or any(f not in ALL_FAMILIES for f in world.families):
        raise OmniMemError(f"--families must name some of {', '.join(ALL_FAMILIES)}.")
    if "counting" in world.families and max(world.object_repeats, world.tone_repeats) < 2:
        raise OmniMemError(
            "Counting questions need something to count: pass --object-repeats or --tone-repeats "
            "of 2 or more, or leave counting out of --families."
        )


def identity_capacity(world: World) -> tuple[int, int]:
    """The most (objects, tones) a clip can hold: identities times their repeats."""
    objects = len(COLOURS) * world.shapes_per_colour * world.object_repeats
    return min(MAX_EVENTS, objects), min(MAX_EVENTS, len(PITCHES) * world.tone_repeats)


def _check_range(
    flag: str, value: tuple[float, float], limits: tuple[float, float], unit: str
) -> None:
    low, high = value
    if not (limits[0] <= low <= high <= limits[1]):
        raise OmniMemError(
            f"{flag} must lie between {limits[0]:g} and {limits[1]:g} {unit}, got {low:g}-{high:g}."
        )


def _check_number(flag: str, value: float, low: float, high: float, unit: str) -> None:
    if not low <= value <= high:
        unit = f" {unit}" if unit else ""
        raise OmniMemError(f"{flag} must be between {low:g} and {high:g}{unit}, got {value:g}.")


def world_flags(world: World) -> list[str]:
    """The ``omnimem generate`` words that select ``world``: none for the plain classic world,
    else ``--world NAME`` and every knob that differs from that preset."""
    knobs = world.differences()
    if world.preset == "classic" and not knobs:
        return []
    words = ["--world", world.preset]
    for name, value in knobs.items():
        words += [f"--{name.replace('_', '-')}", spelled(value)]
    return words


def spelled(value: Any) -> str:
    """A knob's value as the command line writes it: ``1.5-2``, ``3``, ``visual,when``."""
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return ",".join(value)
    if isinstance(value, tuple):
        low, high = value
        return f"{low:g}" if low == high else f"{low:g}-{high:g}"
    return f"{value:g}" if isinstance(value, float) else str(value)
