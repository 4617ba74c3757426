"""A benchmark run on disk: JSON (every record, with per-question answers) and CSV (one flat
row per policy x budget). Each file is written to a temporary name and renamed into place
(:func:`~omnimem_ref.files.atomic_write`), so it is never half-written.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from omnimem_ref.benchmark.records import BenchResult
from omnimem_ref.errors import OmniMemError
from omnimem_ref.files import atomic_write
from omnimem_ref.model.modeling import MODALITY_NAMES
from omnimem_ref.world import ALL_FAMILIES

CSV_FIELDS = [
    "policy",
    "budget",
    "n",
    "accuracy",
    *(f"accuracy_{f}" for f in ALL_FAMILIES),
    *(f"n_{f}" for f in ALL_FAMILIES),
    "clips",
    "budget_tokens",
    "clips_without_eviction",
    "peak_kv_tokens",
    "peak_kv_bytes",
    "max_kept_tokens",
    *(f"kept_{m}" for m in MODALITY_NAMES),
    "chunks",
    "compressions",
    "prefill_seconds",
    "compress_seconds",
    "cost_ratio",
    "compress_ms_mean",
    "prefill_ms_mean",
]


def to_rows(result: BenchResult) -> list[dict[str, Any]]:
    """One flat dict per record (the CSV's rows; ``pandas.DataFrame(to_rows(r))`` in notebooks)."""
    rows = []
    for r in result.records:
        row = r.summary()
        by_family, n_by_family = row.pop("by_family"), row.pop("n_by_family")
        kept = row.pop("kept_tokens")
        row["budget"] = "none" if r.budget is None else r.budget
        for f in ALL_FAMILIES:
            row[f"accuracy_{f}"] = by_family.get(f)
            row[f"n_{f}"] = n_by_family.get(f, 0)
        for m in MODALITY_NAMES:
            row[f"kept_{m}"] = kept.get(m, 0.0)
        rows.append({k: row[k] for k in CSV_FIELDS})
    return rows


def write_json(result: BenchResult, path: str | Path) -> Path:
    text = json.dumps(result.to_json(), indent=1)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def write_csv(result: BenchResult, path: str | Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(to_rows(result))
    return atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))


def load_result(path: str | Path) -> BenchResult:
    """A benchmark JSON written by ``omnimem bench --json``; a missing or bad file is refused."""
    path = Path(path)
    try:
        return BenchResult.from_json(json.loads(path.read_text()))
    except FileNotFoundError as error:
        raise OmniMemError(
            f"No benchmark results at {path}; run `omnimem bench --json`."
        ) from error
    except IsADirectoryError as error:
        raise OmniMemError(
            f"{path} is a folder; give the file written by `omnimem bench --json`."
        ) from error
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise OmniMemError(
            f"{path} is not a benchmark JSON written by `omnimem bench --json` "
            f"({type(error).__name__})."
        ) from error
