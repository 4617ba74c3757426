"""One multiple-choice question of a published benchmark, whatever file format it came from.

Each reader (:mod:`.videomme`, :mod:`.lvbench`, :mod:`.lvomnibench`) turns its own records into
:class:`MultipleChoice`, so the harness that streams videos and scores answers knows nothing of
the formats. A record that cannot become one stops the run with one sentence naming the record
(:class:`~omnimem_ref.errors.OmniMemError`): a benchmark of thousands of questions is better
refused before the first video than scored wrong for hours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnimem_ref.errors import OmniMemError

# Option letters, in order. Qwen2.5-Omni's prompt letters a question's options A, B, C, … in the
# order they are given (``ThinkerPrompts.choice_ids``), so a benchmark's letters must be exactly
# these, in this order, for the model's letter to mean the benchmark's letter.
LETTERS = "ABCDEFGHIJ"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")

# "A. text", "A) text", "(A) text", "A: text": a letter, then the option's text.
_LETTERED = re.compile(r"^\s*\(?([A-J])[.):]\s*(.*)$", re.DOTALL)


@dataclass(frozen=True)
class MultipleChoice:
    """A question, its video, its lettered options and the right letter."""

    id: str  # unique within the benchmark (Video-MME question_id, LVBench uid, …)
    video: Path  # the file streamed through the model
    question: str  # the question alone, without its options
    options: dict[str, str]  # letter -> text: A, B, C, … in order
    answer: str  # one of the option letters
    task_types: tuple[str, ...]  # what accuracy is broken down by (LVBench may give several)
    details: dict[str, str] = field(default_factory=dict)  # other breakdowns: duration, difficulty
    time_reference: str | None = None  # where the evidence is, as the benchmark says (LVBench)

    def letter_of(self, option_text: str) -> str:
        """The letter of an option, from its text (the session answers with the option text)."""
        return next(letter for letter, text in self.options.items() if text == option_text)


def read_annotations(annotations: Path, benchmark: str) -> str:
    """The text of an annotation file, refused in one sentence if there is none."""
    try:
        return annotations.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OmniMemError(f"No {benchmark} annotations at {annotations}.") from None


def json_object(value: Any, where: str) -> dict[str, Any]:
    """``value``, refused in one sentence naming it if it is not a JSON object."""
    if not isinstance(value, dict):
        raise OmniMemError(f"{where} is not a JSON object.")
    return value


def require(record: Mapping[str, Any], name: str, where: str) -> Any:
    """``record[name]``, refused in one sentence naming the record if absent or empty (a missing
    parquet cell reads back as None or NaN)."""
    value = record.get(name)
    empty = isinstance(value, str) and not value.strip()
    if value is None or empty or (isinstance(value, float) and math.isnan(value)):
        raise OmniMemError(f"{where} has no {name!r} field; every record needs one.")
    return value


def lettered(options: Iterable[Any], where: str) -> dict[str, str]:
    """``["A. Apples.", "B. Pears."]`` -> ``{"A": "Apples.", "B": "Pears."}``; the letters must
    run A, B, C, … in order."""
    found: dict[str, str] = {}
    for option in options:
        match = _LETTERED.match(str(option))
        if match is None:
            raise OmniMemError(
                f"{where} has an option {str(option)!r} that does not start with a letter "
                "such as 'A.'."
            )
        found[match.group(1)] = match.group(2).strip()
    check_letters(found, where)
    return found


def as_lettered(options: Mapping[str, str]) -> list[str]:
    """``{"A": "Apples.", "B": "Pears."}`` -> ``["A. Apples.", "B. Pears."]``: the inverse of
    :func:`lettered`, for the writers."""
    return [f"{letter}. {text}" for letter, text in options.items()]


def in_order(options: Sequence[Any]) -> dict[str, str]:
    """Options given without letters, lettered A, B, C, … in the order given."""
    return {letter: str(text).strip() for letter, text in zip(LETTERS, options, strict=False)}


def check_letters(options: Mapping[str, str], where: str) -> None:
    """Refuse options that are not lettered A, B, C, … in order, at least two of them."""
    letters = "".join(options)
    if len(options) < 2 or letters != LETTERS[: len(letters)]:
        raise OmniMemError(
            f"{where} has options lettered {letters or 'nothing'}; expected at least two, "
            f"lettered A, B, C, … in order (at most {len(LETTERS)})."
        )


def check_answer(answer: str, options: Mapping[str, str], where: str) -> str:
    """The answer letter, refused in one sentence if it is not among the options."""
    letter = str(answer).strip().strip("()").rstrip(".")
    if letter not in options:
        raise OmniMemError(
            f"{where} answers {answer!r}, which is not among its options ({', '.join(options)})."
        )
    return letter


def video_file(videos: Path, stem: str) -> Path:
    """The video called ``stem`` in ``videos`` (``.mp4`` or another common container); the
    ``.mp4`` name when there is none, for :func:`check_videos` to report."""
    for suffix in VIDEO_SUFFIXES:
        path = videos / f"{stem}{suffix}"
        if path.is_file():
            return path
    return videos / f"{stem}.mp4"


def by_video(questions: Iterable[MultipleChoice]) -> dict[Path, list[MultipleChoice]]:
    """Questions grouped by their video, videos in order of first appearance."""
    grouped: dict[Path, list[MultipleChoice]] = {}
    for q in questions:
        grouped.setdefault(q.video, []).append(q)
    return grouped


def check_videos(questions: Iterable[MultipleChoice], benchmark: str) -> None:
    """Refuse, before any streaming, a question whose video file is missing."""
    for q in questions:
        if not q.video.is_file():
            raise OmniMemError(
                f"{benchmark} question {q.id} needs the video {q.video}, which does not exist; "
                "pass --videos, the folder that holds the benchmark's videos."
            )


def check_unique(questions: Sequence[MultipleChoice], benchmark: str) -> None:
    """Refuse two questions with the same id: results are kept by question id."""
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise OmniMemError(
                f"{benchmark} has two questions with the id {q.id}; ids must be unique."
            )
        seen.add(q.id)
