"""Question families: what a viewer is asked about a scene, with options and the true answer.

Each family needs a different kind of memory, which is what makes compression interesting:

- ``visual``: a few patches of a few frames (the object of one colour), among many redundant ones;
- ``audio``: a few audio tokens (the loudest tone) among ten times more visual tokens;
- ``binding``: an audio token and the frames playing at the same time;
- ``temporal``: two objects and when each appeared.

These are the classic world's questions, kept exactly as they were. The general world's versions,
and the ``counting`` and ``when`` families, are in :mod:`omnimem_ref.world.families`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from omnimem_ref.world.presets import FAMILIES
from omnimem_ref.world.scene import Scene, VisualEvent
from omnimem_ref.world.vocabulary import COLOURS, PITCHES, SHAPES

__all__ = ["FAMILIES", "Question", "host", "make_questions"]


@dataclass(frozen=True)
class Question:
    """One multiple-choice question. ``evidence_time`` lists the [start, end] spans it is about."""

    clip: str
    family: str
    question: str
    options: tuple[str, ...]
    answer: str
    evidence_time: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> Question:
        return Question(
            clip=d["clip"],
            family=d["family"],
            question=d["question"],
            options=tuple(d["options"]),
            answer=d["answer"],
            evidence_time=tuple(tuple(span) for span in d["evidence_time"]),  # type: ignore[misc]
        )


def make_questions(scene: Scene, clip: str, rng: np.random.Generator) -> list[Question]:
    """One question per family, where the scene allows it (``temporal`` needs two objects)."""
    makers = (_visual, _audio, _binding, _temporal)
    questions = [maker(scene, clip, rng) for maker in makers]
    return [q for q in questions if q is not None]


def _span(event) -> tuple[float, float]:
    return (event.onset, event.offset)


def _visual(scene: Scene, clip: str, rng: np.random.Generator) -> Question:
    obj = scene.visual[int(rng.integers(len(scene.visual)))]
    return Question(
        clip,
        "visual",
        f"what shape was the {obj.colour} object ?",
        SHAPES,
        obj.shape,
        (_span(obj),),
    )


def _audio(scene: Scene, clip: str, rng: np.random.Generator) -> Question:
    loudest = next(a for a in scene.audio if a.loud)
    return Question(
        clip,
        "audio",
        "what was the pitch of the loudest tone ?",
        tuple(PITCHES),
        loudest.pitch,
        (_span(loudest),),
    )


def host(scene: Scene, onset: float, offset: float) -> VisualEvent | None:
    """The object on screen for the whole of [onset, offset), if there is one."""
    return next((v for v in scene.visual if v.onset <= onset and offset <= v.offset), None)


def _binding(scene: Scene, clip: str, rng: np.random.Generator) -> Question | None:
    pairs = [(a, host(scene, a.onset, a.offset)) for a in scene.audio]
    pairs = [(a, v) for a, v in pairs if v is not None]
    if not pairs:
        return None
    tone, obj = pairs[int(rng.integers(len(pairs)))]
    assert obj is not None
    others = [c for c in COLOURS if c != obj.colour]
    options = [obj.colour, *rng.choice(others, size=3, replace=False).tolist()]
    rng.shuffle(options)
    return Question(
        clip,
        "binding",
        f"what colour was on screen when the {tone.pitch} tone played ?",
        tuple(options),
        obj.colour,
        (_span(tone), _span(obj)),
    )


def _temporal(scene: Scene, clip: str, rng: np.random.Generator) -> Question | None:
    if len(scene.visual) < 2:
        return None
    i, j = sorted(rng.choice(len(scene.visual), size=2, replace=False).tolist())
    first, second = scene.visual[i], scene.visual[j]  # objects are stored in time order
    a, b = (first, second) if rng.random() < 0.5 else (second, first)
    return Question(
        clip,
        "temporal",
        f"which came first : the {a.colour} object or the {b.colour} object ?",
        (a.colour, b.colour),
        first.colour,
        (_span(first), _span(second)),
    )
