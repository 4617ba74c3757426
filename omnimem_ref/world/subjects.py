"""What a question can be about in the general world: an object identity (colour and shape) or
a pitch, with every span it occurred in.

In the classic world an object is named by its colour alone ("the red object"), because each
colour appears once. With ``--shapes-per-colour`` above one, a colour can take several shapes, so
an object is named by both ("the red square"); with repeats, one name covers several instances.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnimem_ref.world.scene import Scene

Span = tuple[float, float]


@dataclass(frozen=True)
class Subject:
    """An object identity (``pitch == ""``) or a pitch (``colour == ""``) and its spans."""

    colour: str
    shape: str
    pitch: str
    spans: tuple[Span, ...]

    @property
    def is_tone(self) -> bool:
        return bool(self.pitch)

    @property
    def count(self) -> int:
        return len(self.spans)

    def name(self, by_shape: bool) -> str:
        """How a question calls it: "high tone", "red square", or "red object" (colour only)."""
        if self.is_tone:
            return f"{self.pitch} tone"
        return f"{self.colour} {self.shape if by_shape else 'object'}"


def object_subjects(scene: Scene) -> list[Subject]:
    """Each (colour, shape) on screen, in order of first appearance, with all its spans."""
    spans: dict[tuple[str, str], list[Span]] = {}
    for v in scene.visual:
        spans.setdefault((v.colour, v.shape), []).append((v.onset, v.offset))
    return [Subject(c, s, "", tuple(found)) for (c, s), found in spans.items()]


def tone_subjects(scene: Scene) -> list[Subject]:
    """Each pitch heard, in order of first tone, with all its spans (loud or soft alike)."""
    spans: dict[str, list[Span]] = {}
    for a in scene.audio:
        spans.setdefault(a.pitch, []).append((a.onset, a.offset))
    return [Subject("", "", p, tuple(found)) for p, found in spans.items()]


def third_of(subject: Subject, duration: float) -> int | None:
    """0, 1 or 2 when every span of ``subject`` lies wholly inside that third of the clip;
    None if one straddles two thirds or its spans lie in different thirds."""
    for k in range(3):
        low, high = k * duration / 3, (k + 1) * duration / 3
        if all(low <= a and b <= high for a, b in subject.spans):
            return k
    return None
