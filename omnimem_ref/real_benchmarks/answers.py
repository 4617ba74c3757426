"""The answer log: every finished (question, policy, budget), one JSON line each, made durable as
soon as it is written.

A real benchmark runs for hours or days, so an interruption (a crash, a lost machine, Ctrl-C)
must lose nothing that was finished, and a rerun must not redo it. Each answer is therefore
appended as one line, flushed and ``fsync``-ed before the next question starts; a rerun with
``--resume`` reads the lines back and skips every (question, policy, budget) they hold. The
first line is a header with the settings answers depend on (the benchmark, the model, how it
streams): resuming with other settings would mix two experiments in one file, so it is refused.

A process killed in the middle of a write can leave a last line without its newline; that line
is dropped (its answer is simply recomputed), and the file is cut back to its last whole line so
that later appends stay one JSON object per line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omnimem_ref.errors import OmniMemError

Key = tuple[str, str, str | None]  # (question id, policy, budget as written, None for full)


def answer_key(line: dict[str, Any]) -> Key:
    return (line["question"], line["policy"], line["budget"])


class AnswerLog:
    """An append-only JSON-lines file of answers, opened fresh or resumed."""

    def __init__(self, path: Path, settings: dict[str, Any], resume: bool) -> None:
        self.path = path
        self.dropped_torn_line = False
        if path.is_dir():
            raise OmniMemError(f"{path} is a folder; give a file name for the answer log.")
        if path.exists() and not resume:
            raise OmniMemError(
                f"{path} already holds answers; pass --resume {path} to continue that run, or "
                "choose another --json."
            )
        self.lines: list[dict[str, Any]] = []
        if path.exists():
            check_same_settings(read_settings(path), settings, path)  # before touching the file
            self.lines = self._read_answers(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_durably(path, {"settings": settings}, mode="w")
        self.done: set[Key] = {answer_key(line) for line in self.lines}

    def _read_answers(self, path: Path) -> list[dict[str, Any]]:
        """Every whole answer line (after the header); a torn last line is cut off the file."""
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            with path.open("r+b") as file:
                file.truncate(len(data))
            self.dropped_torn_line = True
        records = []
        for number, line in enumerate(data.decode("utf-8").splitlines()[1:], start=2):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise OmniMemError(
                    f"Line {number} of {path} is not valid JSON; it is not an answer log "
                    "written by `omnimem bench --benchmark`."
                ) from None
        return records

    def append(self, line: dict[str, Any]) -> None:
        """Write one answer and make it durable before returning."""
        self._write_durably(self.path, line, mode="a")
        self.lines.append(line)
        self.done.add(answer_key(line))

    @staticmethod
    def _write_durably(path: Path, record: dict[str, Any], mode: str) -> None:
        with path.open(mode, encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())


def check_same_settings(old: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    """Refuse to add answers made under other settings to ``path``."""
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            raise OmniMemError(
                f"{path} was written with {name} {old.get(name)!r}, not {new.get(name)!r}; "
                "resume it with the same settings, or start a new file."
            )


def read_logs(paths: Iterable[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The settings and answers of several logs (e.g. one per shard), refused if their settings
    differ from the first log's; each (question, policy, budget) kept once."""
    merged: dict[Key, dict[str, Any]] = {}
    settings: dict[str, Any] | None = None
    for path in paths:
        if not path.is_file():
            raise OmniMemError(f"No answer log at {path}.")
        settings = settings if settings is not None else read_settings(path)
        for line in AnswerLog(path, settings, resume=True).lines:
            merged.setdefault(answer_key(line), line)
    return settings or {}, list(merged.values())


def read_settings(path: Path) -> dict[str, Any]:
    """The settings header of the answer log at ``path``."""
    with path.open(encoding="utf-8") as file:
        first = file.readline()
    try:
        return dict(json.loads(first)["settings"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise OmniMemError(
            f"{path} has no settings header; it is not an answer log written by "
            "`omnimem bench --benchmark`."
        ) from None
