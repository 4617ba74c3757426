"""Video-MME: one parquet table, one row per question (its published ``test-*.parquet``).

Fields read, and what for:

- ``question_id`` (e.g. ``001-1``): the question's id in the results;
- ``videoID`` (the YouTube id): the video file, ``<videos>/<videoID>.mp4``;
- ``video_id`` (e.g. ``001``): named in error sentences only;
- ``duration`` (``short``, ``medium``, ``long``): the ``--duration`` filter, and a breakdown;
- ``task_type`` (e.g. ``Counting Problem``): accuracy per task type;
- ``question``; ``options`` (``["A. …", "B. …", …]``); ``answer`` (a letter);
- ``domain`` (e.g. ``Knowledge``), where present: a breakdown.

Other columns (``sub_category``, ``url``) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omnimem_ref.errors import OmniMemError
from omnimem_ref.real_benchmarks.multiple_choice import (
    MultipleChoice,
    as_lettered,
    by_video,
    check_answer,
    lettered,
    require,
    video_file,
)

NAME = "Video-MME"
DURATIONS = ("short", "medium", "long")  # under 2 minutes, 4 to 15, 30 to 60
FILE_NAME = "videomme.parquet"  # what `omnimem generate --format videomme` writes


def read_videomme(annotations: Path, videos: Path) -> list[MultipleChoice]:
    """Every question of the table, in its order (``--duration`` filters them afterwards, by
    ``details["duration"]``)."""
    rows = _read_rows(annotations)
    return [
        _question(row, f"{NAME} row {number} of {annotations.name}", videos)
        for number, row in enumerate(rows, start=1)
    ]


def _read_rows(annotations: Path) -> list[dict[str, Any]]:
    import pandas as pd  # slow to import: only when a parquet is read

    try:
        table = pd.read_parquet(annotations)
    except FileNotFoundError:
        raise OmniMemError(f"No {NAME} annotations at {annotations}.") from None
    except Exception as error:  # pyarrow raises its own kinds for a file that is not parquet
        raise OmniMemError(
            f"{annotations} could not be read as {NAME}'s parquet table ({type(error).__name__})."
        ) from None
    return table.to_dict("records")


def _question(row: dict[str, Any], where: str, videos: Path) -> MultipleChoice:
    where = f"{NAME} question {require(row, 'question_id', where)}"
    length = str(require(row, "duration", where))
    if length not in DURATIONS:
        raise OmniMemError(f"{where} has duration {length!r}, not one of {', '.join(DURATIONS)}.")
    require(row, "video_id", where)
    options = lettered(_as_list(require(row, "options", where)), where)
    return MultipleChoice(
        id=str(row["question_id"]),
        video=video_file(videos, str(require(row, "videoID", where))),
        question=str(require(row, "question", where)).strip(),
        options=options,
        answer=check_answer(require(row, "answer", where), options, where),
        task_types=(str(require(row, "task_type", where)),),
        details={"duration": length, **_domain(row)},
    )


def _domain(row: dict[str, Any]) -> dict[str, str]:
    """``{"domain": …}`` when the row has one (it is not needed to score a question)."""
    domain = row.get("domain")
    return {"domain": domain} if isinstance(domain, str) and domain.strip() else {}


def _as_list(options: Any) -> list[Any]:
    """A parquet list cell reads back as a numpy array; a hand-made table may hold a list."""
    return [options] if isinstance(options, str) else list(options)


def write_videomme(
    questions: Sequence[MultipleChoice], durations: dict[str, float], path: Path
) -> None:
    """Write ``questions`` as a Video-MME table (``durations``: seconds per video stem), so the
    harness can be run on generated clips; :func:`read_videomme` reads it back."""
    import pandas as pd

    numbers = {video: i for i, video in enumerate(by_video(questions), start=1)}
    rows = [
        {
            "video_id": f"{numbers[q.video]:03d}",
            "duration": duration_class(durations[q.video.stem]),
            "domain": "synthetic",
            "sub_category": "synthetic",
            "url": "",
            "videoID": q.video.stem,
            "question_id": q.id,
            "task_type": q.task_types[0],
            "question": q.question,
            "options": as_lettered(q.options),
            "answer": q.answer,
        }
        for q in questions
    ]
    pd.DataFrame(rows).to_parquet(path, index=False)


def duration_class(seconds: float) -> str:
    """Video-MME's class of a video's length (its own videos are 0-2, 4-15 and 30-60 minutes)."""
    if seconds <= 120:
        return "short"
    return "medium" if seconds <= 15 * 60 else "long"
