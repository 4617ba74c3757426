"""The three benchmark formats by name: how to read each, and how to write generated clips in it.

``omnimem bench --benchmark NAME`` reads with :func:`read_benchmark`; ``omnimem generate
--format NAME`` writes with :func:`write_annotations`. Adding a benchmark is one module with a
reader and a writer, and one line in :data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omnimem_ref.errors import OmniMemError
from omnimem_ref.real_benchmarks import lvbench, lvomnibench, videomme
from omnimem_ref.real_benchmarks.multiple_choice import (
    LETTERS,
    MultipleChoice,
    check_unique,
    in_order,
    video_file,
)

Reader = Callable[[Path, Path], list[MultipleChoice]]
Writer = Callable[[Sequence[MultipleChoice], dict[str, float], Path], None]


@dataclass(frozen=True)
class Format:
    name: str  # as the benchmark calls itself, for sentences
    file_name: str  # what `omnimem generate --format` writes
    read: Reader
    write: Writer


FORMATS: dict[str, Format] = {
    "videomme": Format(
        videomme.NAME, videomme.FILE_NAME, videomme.read_videomme, videomme.write_videomme
    ),
    "lvbench": Format(lvbench.NAME, lvbench.FILE_NAME, lvbench.read_lvbench, lvbench.write_lvbench),
    "lvomnibench": Format(
        lvomnibench.NAME,
        lvomnibench.FILE_NAME,
        lvomnibench.read_lvomnibench,
        lvomnibench.write_lvomnibench,
    ),
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise OmniMemError(f"Unknown benchmark {name!r}; choose one of: {', '.join(FORMATS)}.")
    return FORMATS[name]


def read_benchmark(
    name: str, annotations: Path, videos: Path, duration: str | None = None
) -> list[MultipleChoice]:
    """Every question of benchmark ``name``, ids checked unique; with ``duration`` (Video-MME's
    ``short``, ``medium`` or ``long``), only the questions of videos of that class. Video files
    are checked later, on the questions a run selects
    (:func:`~omnimem_ref.real_benchmarks.multiple_choice.check_videos`)."""
    form = get_format(name)
    if duration is not None and name != "videomme":
        raise OmniMemError(
            f"--duration is Video-MME's filter; {form.name} has no duration classes."
        )
    if duration is not None and duration not in videomme.DURATIONS:
        raise OmniMemError(
            f"--duration {duration!r} is not one of {', '.join(videomme.DURATIONS)}."
        )
    questions = form.read(annotations, videos)
    check_unique(questions, form.name)
    if duration is not None:
        questions = [q for q in questions if q.details["duration"] == duration]
    if not questions:
        kind = f"{duration} " if duration is not None else ""
        raise OmniMemError(f"{annotations} holds no {kind}{form.name} question to run.")
    return questions


def write_annotations(name: str, dataset: Path) -> Path:
    """Write the questions of a folder made by ``omnimem generate`` in benchmark ``name``'s format,
    beside its clips (so ``--videos`` is the same folder); return the annotations file."""
    from omnimem_ref.dataset import load_dataset
    from omnimem_ref.files import atomic_write

    form = get_format(name)
    world_questions, _, manifest = load_dataset(dataset)
    durations = {clip["name"]: float(clip["duration"]) for clip in manifest["clips"]}
    counts: dict[str, int] = {}
    questions = []
    for q in world_questions:
        counts[q.clip] = counts.get(q.clip, 0) + 1
        options = in_order(q.options)
        start, end = q.evidence_time[0]
        questions.append(
            MultipleChoice(
                id=f"{q.clip}-{counts[q.clip]}",
                video=video_file(dataset, q.clip),
                question=q.question,
                options=options,
                answer=LETTERS[q.options.index(q.answer)],
                task_types=(q.family,),
                details={"audio_type": "tone" if q.family in ("audio", "binding") else "none"},
                time_reference=f"{_clock(start)}-{_clock(end)}",
            )
        )
    path = dataset / form.file_name
    return atomic_write(path, lambda tmp: form.write(questions, durations, tmp))


def _clock(seconds: float) -> str:
    """``75.3`` -> ``"01:15"``, as LVBench writes times."""
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"
