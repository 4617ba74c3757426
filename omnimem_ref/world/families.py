"""The question families of the general world, and :func:`world_questions`, which asks a scene
of any world its questions.

The four classic families keep their meaning, made unambiguous when colours are shared and events
repeat: ``visual`` asks the shape of a colour that takes one shape; ``binding`` asks about a pitch
heard once; ``temporal`` compares two objects seen once. Two families are new:

- ``counting``: *how many times did the high tone play?* / *... did the red square appear?*.
  Every instance must survive compression; dropping one changes the answer.
- ``when``: *in which third was the red square on screen?* (asked only when all its instances lie
  in one third). The object's time must survive, and evidence lies in every third alike.

Their answers are balanced by drawing the answer first, uniformly (a count from one to the repeat
cap, a third), and then a subject that has it; a clip without one gets no question of that family.
So no option is right more often than another, whatever the knobs, at the price of fewer questions
where counts bunch up (64 tones on four pitches all play sixteen times: one count in sixteen).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from omnimem_ref.world.presets import World
from omnimem_ref.world.questions import Question, host, make_questions
from omnimem_ref.world.scene import Scene
from omnimem_ref.world.subjects import Subject, object_subjects, third_of, tone_subjects
from omnimem_ref.world.vocabulary import COLOURS, COUNT_WORDS, PITCHES, SHAPES, THIRDS

Maker = Callable[[Scene, str, np.random.Generator, World], "Question | None"]


def world_questions(
    scene: Scene, clip: str, rng: np.random.Generator, world: World
) -> list[Question]:
    """One question per family of ``world``, where the scene allows it (classic: unchanged)."""
    if world.is_classic:
        return make_questions(scene, clip, rng)
    questions = [MAKERS[family](scene, clip, rng, world) for family in world.families]
    return [q for q in questions if q is not None]


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _visual(scene: Scene, clip: str, rng: np.random.Generator, world: World) -> Question | None:
    shapes: dict[str, set[str]] = {}
    for v in scene.visual:
        shapes.setdefault(v.colour, set()).add(v.shape)
    single = [colour for colour, found in shapes.items() if len(found) == 1]
    if not single:
        return None
    colour = _pick(rng, single)
    spans = tuple((v.onset, v.offset) for v in scene.visual if v.colour == colour)
    (shape,) = shapes[colour]
    question = f"what shape was the {colour} object ?"
    return Question(clip, "visual", question, SHAPES, shape, spans)


def _audio(scene: Scene, clip: str, rng: np.random.Generator, world: World) -> Question:
    loudest = next(a for a in scene.audio if a.loud)
    question = "what was the pitch of the loudest tone ?"
    return Question(
        clip, "audio", question, tuple(PITCHES), loudest.pitch, ((loudest.onset, loudest.offset),)
    )


def _binding(scene: Scene, clip: str, rng: np.random.Generator, world: World) -> Question | None:
    once = {s.pitch for s in tone_subjects(scene) if s.count == 1}
    pairs = [(a, host(scene, a.onset, a.offset)) for a in scene.audio if a.pitch in once]
    pairs = [(a, v) for a, v in pairs if v is not None]
    if not pairs:
        return None
    tone, obj = _pick(rng, pairs)
    assert obj is not None
    others = [c for c in COLOURS if c != obj.colour]
    options = [obj.colour, *rng.choice(others, size=3, replace=False).tolist()]
    rng.shuffle(options)
    question = f"what colour was on screen when the {tone.pitch} tone played ?"
    spans = ((tone.onset, tone.offset), (obj.onset, obj.offset))
    return Question(clip, "binding", question, tuple(options), obj.colour, spans)


def _temporal(scene: Scene, clip: str, rng: np.random.Generator, world: World) -> Question | None:
    once = [s for s in object_subjects(scene) if s.count == 1]
    if len(once) < 2:
        return None
    i, j = sorted(rng.choice(len(once), size=2, replace=False).tolist())
    first, second = once[i], once[j]  # subjects are listed in order of first appearance
    a, b = (first, second) if rng.random() < 0.5 else (second, first)
    by_shape = world.shapes_per_colour > 1
    word = (lambda s: s.colour) if a.colour != b.colour else (lambda s: s.shape)
    question = f"which came first : the {a.name(by_shape)} or the {b.name(by_shape)} ?"
    return Question(
        clip, "temporal", question, (word(a), word(b)), word(first), first.spans + second.spans
    )


def _counting(scene: Scene, clip: str, rng: np.random.Generator, world: World) -> Question | None:
    most = max(world.object_repeats, world.tone_repeats)
    count = int(rng.integers(1, most + 1))
    subjects = [s for s in tone_subjects(scene) + object_subjects(scene) if s.count == count]
    if not subjects:
        return None
    subject: Subject = _pick(rng, subjects)
    verb = "play" if subject.is_tone else "appear"
    name = subject.name(world.shapes_per_colour > 1)
    question = f"how many times did the {name} {verb} ?"
    options = count_options(rng, count, most)
    return Question(clip, "counting", question, options, COUNT_WORDS[count - 1], subject.spans)


def count_options(rng: np.random.Generator, count: int, most: int) -> tuple[str, ...]:
    """Every number up to ``most`` when that is four or fewer; else the answer and three other
    numbers up to ``most``, drawn at random, in increasing order."""
    if most <= 4:
        return COUNT_WORDS[:most]
    others = [n for n in range(1, most + 1) if n != count]
    chosen = sorted([count, *rng.choice(others, size=3, replace=False).tolist()])
    return tuple(COUNT_WORDS[n - 1] for n in chosen)


def _when(scene: Scene, clip: str, rng: np.random.Generator, world: World) -> Question | None:
    by_third: dict[int, list[Subject]] = {}
    for subject in tone_subjects(scene) + object_subjects(scene):
        third = third_of(subject, scene.duration)
        if third is not None:
            by_third.setdefault(third, []).append(subject)
    third = int(rng.integers(len(THIRDS)))
    if third not in by_third:
        return None
    subject = _pick(rng, by_third[third])
    name = subject.name(world.shapes_per_colour > 1)
    if subject.is_tone:
        question = f"in which third did the {name} play ?"
    else:
        question = f"in which third was the {name} on screen ?"
    return Question(clip, "when", question, THIRDS, THIRDS[third], subject.spans)


MAKERS: dict[str, Maker] = {
    "visual": _visual,
    "audio": _audio,
    "binding": _binding,
    "temporal": _temporal,
    "counting": _counting,
    "when": _when,
}
