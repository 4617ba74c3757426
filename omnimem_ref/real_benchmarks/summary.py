"""Accuracy from the answer log: overall, per task type and per breakdown, for each policy and
budget; written to one JSON file atomically (a temporary file renamed into place).

The summary is always recomputed from the log, never kept up to date beside it: the log is the
one record of what was answered, so a summary can be rebuilt at any time (after a resume, or from
the logs of several shards) and never disagrees with it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from omnimem_ref.files import atomic_write
from omnimem_ref.real_benchmarks.multiple_choice import MultipleChoice
from omnimem_ref.real_benchmarks.run import Run, logged_budget

Groups = Callable[[dict[str, Any]], Iterable[str]]  # an answer line -> the groups it counts in


def summarize(
    questions: Sequence[MultipleChoice],
    runs: Sequence[Run],
    lines: Sequence[dict[str, Any]],
    about: dict[str, Any],
) -> dict[str, Any]:
    """One record per run over the selected ``questions``; ``about`` says what was run."""
    wanted = {q.id for q in questions}
    by_run: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if line["question"] in wanted:
            by_run[line["policy"], line["budget"]].append(line)
    records = [
        _record(policy, logged_budget(budget), by_run[policy, logged_budget(budget)], len(wanted))
        for policy, budget in runs
    ]
    return {**about, "questions": len(wanted), "records": records}


def _record(
    policy: str, budget: str | None, lines: list[dict[str, Any]], n_questions: int
) -> dict[str, Any]:
    per_video = list({line["video"]: line for line in lines}.values())  # costs are per stream
    prefill = sum(v["prefill_seconds"] for v in per_video)
    compress = sum(v["compress_seconds"] for v in per_video)
    return {
        "policy": policy,
        "budget": budget,
        "n": len(lines),
        "missing": n_questions - len(lines),  # 0 once the run is complete
        "accuracy": _accuracy(lines),
        "by_task_type": _by(lines, lambda line: line["task_types"]),
        "n_by_task_type": _counts(lines, lambda line: line["task_types"]),
        "by_detail": {
            name: _by(lines, _detail(name))
            for name in sorted({name for line in lines for name in line["details"]})
        },
        "videos": len(per_video),
        "budget_tokens_mean": _mean([v["budget_tokens"] for v in per_video]),
        "peak_kv_tokens": max((v["peak_tokens"] for v in per_video), default=0),
        "cost_ratio": compress / prefill if prefill > 0 else 0.0,
    }


def _accuracy(lines: Sequence[dict[str, Any]]) -> float | None:
    return sum(line["correct"] for line in lines) / len(lines) if lines else None


def _by(lines: Sequence[dict[str, Any]], groups: Groups) -> dict[str, float | None]:
    """Accuracy per group; a line in several groups (LVBench's question types) counts in each."""
    return {group: _accuracy(members) for group, members in _grouped(lines, groups).items()}


def _counts(lines: Sequence[dict[str, Any]], groups: Groups) -> dict[str, int]:
    """Lines per group, counted as :func:`_by` counts them."""
    return {group: len(members) for group, members in _grouped(lines, groups).items()}


def _detail(name: str) -> Groups:
    """Groups by the value of one of the question's details (e.g. ``duration``)."""
    return lambda line: [line["details"][name]]


def _grouped(lines: Sequence[dict[str, Any]], groups: Groups) -> dict[str, list[dict[str, Any]]]:
    """The lines of each group named by ``groups(line)``, groups in sorted order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        for group in groups(line):
            grouped[group].append(line)
    return dict(sorted(grouped.items()))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    """Write ``summary`` to ``path``; a reader never sees half of it."""
    text = json.dumps(summary, indent=1) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def table(summary: dict[str, Any]) -> str:
    """Accuracy (%) per policy and budget: overall, then per task type."""
    types = sorted({t for r in summary["records"] for t in r["by_task_type"]})
    header = f"{'policy @ budget':<28}{'n':>6}{'all':>7}" + "".join(f"  {t}" for t in types)
    lines = [f"Accuracy (%) on {summary['questions']} {summary['benchmark']} questions", header]
    lines.append("-" * len(header))
    for r in summary["records"]:
        label = r["policy"] if r["budget"] is None else f"{r['policy']} @ {r['budget']}"
        cells = "".join(f"  {_percent(r['by_task_type'].get(t)):>{len(t)}}" for t in types)
        lines.append(f"{label:<28}{r['n']:>6}{_percent(r['accuracy']):>7}{cells}")
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"
