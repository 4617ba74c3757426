"""LVBench: JSON lines, one line per video with its questions (its published
``video_info.meta.jsonl``).

Fields read, and what for:

- ``key`` (the YouTube id): the video file, ``<videos>/<key>.mp4``;
- ``type`` (e.g. ``cartoon``): a breakdown (``video_type``);
- ``video_info.duration_minutes``: not needed (the file's own length is streamed), not required;
- ``qa``: the video's questions, each with
  ``uid`` (its id in the results), ``question`` (the question, then its options inline:
  ``"(A) …\\n(B) …"``), ``answer`` (a letter), ``question_type`` (a list, or one string:
  accuracy per task type counts a question under each of its types, as LVBench does) and
  ``time_reference`` (where the evidence is, kept in the answer log for later analysis).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omnimem_ref.errors import OmniMemError
from omnimem_ref.real_benchmarks.multiple_choice import (
    LETTERS,
    MultipleChoice,
    by_video,
    check_answer,
    check_letters,
    json_object,
    read_annotations,
    require,
    video_file,
)

NAME = "LVBench"
FILE_NAME = "lvbench.jsonl"  # what `omnimem generate --format lvbench` writes


def read_lvbench(annotations: Path, videos: Path) -> list[MultipleChoice]:
    """Every question of every video, in file order."""
    questions = []
    for number, line in enumerate(_read_lines(annotations), start=1):
        where = f"{NAME} line {number} of {annotations.name}"
        video = json_object(line, where)
        where = f"{NAME} video {require(video, 'key', where)}"
        qa = require(video, "qa", where)
        if not isinstance(qa, list):
            raise OmniMemError(f"{where} has a 'qa' field that is not a list of questions.")
        for index, item in enumerate(qa, start=1):
            item_where = f"{where}, question {index}"
            questions.append(_question(json_object(item, item_where), video, item_where, videos))
    return questions


def _read_lines(annotations: Path) -> list[Any]:
    """The JSON value of every non-blank line."""
    records = []
    for number, line in enumerate(read_annotations(annotations, NAME).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise OmniMemError(
                f"{NAME} line {number} of {annotations.name} is not valid JSON."
            ) from None
    return records


def _question(
    item: dict[str, Any], video: dict[str, Any], where: str, videos: Path
) -> MultipleChoice:
    where = f"{NAME} question {require(item, 'uid', where)}"
    question, options = split_options(str(require(item, "question", where)), where)
    kinds = require(item, "question_type", where)
    return MultipleChoice(
        id=str(item["uid"]),
        video=video_file(videos, str(video["key"])),
        question=question,
        options=options,
        answer=check_answer(require(item, "answer", where), options, where),
        task_types=tuple(str(k) for k in ([kinds] if isinstance(kinds, str) else kinds)),
        details={"video_type": str(require(video, "type", where))},
        time_reference=None if item.get("time_reference") is None else str(item["time_reference"]),
    )


def split_options(text: str, where: str) -> tuple[str, dict[str, str]]:
    """``"What …?\\n(A) x\\n(B) y"`` -> ``("What …?", {"A": "x", "B": "y"})``: each letter's
    marker ``(A)``, ``(B)``, … is looked for after the previous one, so parentheses in the
    question itself do not confuse it unless they hold a lone capital followed by the next one."""
    starts = []
    at = 0
    for letter in LETTERS:
        found = text.find(f"({letter})", at)
        if found < 0:
            break
        starts.append(found)
        at = found + 3
    bounds = [*starts, len(text)]
    options = {LETTERS[i]: text[bounds[i] + 3 : bounds[i + 1]].strip() for i in range(len(starts))}
    check_letters(options, where)
    return text[: starts[0]].strip(), options


def write_lvbench(
    questions: Sequence[MultipleChoice], durations: dict[str, float], path: Path
) -> None:
    """Write ``questions`` as LVBench lines (``durations``: seconds per video stem);
    :func:`read_lvbench` reads them back."""
    lines = [
        {
            "key": video.stem,
            "type": "synthetic",
            "video_info": {"duration_minutes": round(durations[video.stem] / 60, 3)},
            "qa": [
                {
                    "uid": q.id,
                    "question": "\n".join(
                        [q.question, *(f"({k}) {text}" for k, text in q.options.items())]
                    ),
                    "answer": q.answer,
                    "question_type": list(q.task_types),
                    "time_reference": q.time_reference or "",
                }
                for q in mine
            ],
        }
        for video, mine in by_video(questions).items()
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
