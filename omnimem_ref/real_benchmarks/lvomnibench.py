"""LVOmniBench: one JSON list of questions (its ``data.json``).

Fields read, and what for:

- ``video_id``: the video file, ``<videos>/<video_id>.mp4``, and the question's id in the
  results (``<video_id>-<n>``, n counting the video's questions from 1: records carry no id);
- ``question``; ``options``; ``correct_option``;
- ``question_type``: accuracy per task type;
- ``audio_type``, ``difficulty``, ``video_category``: breakdowns.

The exact shape of ``options`` and ``correct_option`` could not be checked against the published
file here, so the common shapes are accepted: a list of ``"A. …"`` strings, a list of plain
texts (lettered A, B, … in order) or a ``{"A": …}`` mapping; a letter (``"B"``, ``"B."``,
``"(B)"``) or the text of one of the options.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omnimem_ref.errors import OmniMemError
from omnimem_ref.real_benchmarks.multiple_choice import (
    MultipleChoice,
    as_lettered,
    check_answer,
    check_letters,
    in_order,
    json_object,
    lettered,
    read_annotations,
    require,
    video_file,
)

NAME = "LVOmniBench"
FILE_NAME = "data.json"
DETAILS = ("audio_type", "difficulty", "video_category")


def read_lvomnibench(annotations: Path, videos: Path) -> list[MultipleChoice]:
    """Every question, in file order."""
    records = _read_list(annotations)
    counts: dict[str, int] = {}
    questions = []
    for number, record in enumerate(records, start=1):
        where = f"{NAME} record {number} of {annotations.name}"
        video = str(require(json_object(record, where), "video_id", where))
        counts[video] = counts.get(video, 0) + 1
        where = f"{NAME} record {number} (video {video})"
        questions.append(_question(record, f"{video}-{counts[video]}", where, videos))
    return questions


def _read_list(annotations: Path) -> list[Any]:
    text = read_annotations(annotations, NAME)
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        raise OmniMemError(f"{annotations} is not valid JSON.") from None
    if not isinstance(records, list):
        raise OmniMemError(f"{annotations} does not hold a list of questions.")
    return records


def _question(record: dict[str, Any], question_id: str, where: str, videos: Path) -> MultipleChoice:
    options = _options(require(record, "options", where), where)
    return MultipleChoice(
        id=question_id,
        video=video_file(videos, str(record["video_id"])),
        question=str(require(record, "question", where)).strip(),
        options=options,
        answer=_answer(require(record, "correct_option", where), options, where),
        task_types=(str(require(record, "question_type", where)),),
        details={name: str(require(record, name, where)) for name in DETAILS},
    )


def _options(raw: Any, where: str) -> dict[str, str]:
    if isinstance(raw, dict):
        options = {str(k).strip(): str(v).strip() for k, v in raw.items()}
        check_letters(options, where)
        return options
    if not isinstance(raw, list):
        raise OmniMemError(f"{where} has 'options' that are neither a list nor a mapping.")
    try:
        return lettered(raw, where)
    except OmniMemError:
        options = in_order(raw)  # plain texts
        check_letters(options, where)
        return options


def _answer(raw: Any, options: dict[str, str], where: str) -> str:
    """A letter, or the text of an option."""
    for letter, text in options.items():
        if str(raw).strip() == text:
            return letter
    return check_answer(raw, options, where)


def write_lvomnibench(
    questions: Sequence[MultipleChoice], durations: dict[str, float], path: Path
) -> None:
    """Write ``questions`` as LVOmniBench's list (the question ids become ``<video>-<n>`` in the
    order given); :func:`read_lvomnibench` reads it back."""
    records = [
        {
            "video_id": q.video.stem,
            "question": q.question,
            "options": as_lettered(q.options),
            "correct_option": q.answer,
            "question_type": q.task_types[0],
            "audio_type": q.details.get("audio_type", "none"),
            "difficulty": q.details.get("difficulty", "easy"),
            "video_category": q.details.get("video_category", "synthetic"),
        }
        for q in questions
    ]
    path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
