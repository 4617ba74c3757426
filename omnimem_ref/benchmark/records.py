"""What a benchmark run produces: one record per policy and budget, and the run that holds them.

:class:`BenchResult` round-trips through JSON (:meth:`BenchResult.to_json`,
:meth:`BenchResult.from_json`); :mod:`omnimem_ref.benchmark.files` writes and reads the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from omnimem_ref.budget import Budget, parse_budget
from omnimem_ref.errors import OmniMemError
from omnimem_ref.world import ALL_FAMILIES

FULL = "full"


@dataclass
class BenchRecord:
    """One policy at one budget (``budget`` is ``None`` for ``full``, the upper bound)."""

    policy: str
    budget: str | None
    n: int  # questions
    accuracy: float
    by_family: dict[str, float]
    n_by_family: dict[str, int]
    clips: int
    budget_tokens: float  # the budget in tokens per layer, mean over clips (full: stream length)
    clips_without_eviction: int  # the budget held the whole stream: nothing was evicted
    peak_kv_tokens: int  # per layer, max over clips and chunks, before compression
    peak_kv_bytes: int  # the same, in bytes of keys + values over all layers
    max_kept_tokens: float  # per layer, max over clips and chunks, after compression
    kept_tokens: dict[str, float]  # per modality and layer, end of stream, mean over clips
    chunks: int
    compressions: int
    prefill_seconds: float  # Σ over every chunk of every clip
    compress_seconds: float  # Σ over every chunk of every clip
    cost_ratio: float  # compress_seconds / prefill_seconds: scoring + selection per unit prefill
    compress_ms_mean: float  # mean wall time of one compression
    prefill_ms_mean: float  # mean wall time of one chunk's prefill
    predictions: list[str] = field(default_factory=list)  # aligned with BenchResult.questions

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "predictions"}


@dataclass
class BenchResult:
    """Every record, the questions they answered (in order), and how the run was made."""

    records: list[BenchRecord]
    questions: list[dict[str, Any]]  # clip, family, answer
    policies: list[str]  # without "full"
    budgets: list[str]
    data: str
    checkpoint: str | None
    wall_seconds: float
    adapter: str | None = None  # LoRA adapter folder, if the model ran with one
    slack: float = 0.0  # compressions kept (1 - slack) x budget (see StreamingSession)
    log_length_keys: int | None = None  # log-length attention past this many keys, if on

    @property
    def full(self) -> BenchRecord | None:
        return next((r for r in self.records if r.policy == FULL), None)

    @property
    def families(self) -> list[str]:
        """The question families the records hold (:func:`families_of`)."""
        return families_of(r.by_family for r in self.records)

    def record(self, policy: str, budget: str | None) -> BenchRecord:
        if policy == FULL:
            budget = None
        for r in self.records:
            if r.policy == policy and r.budget == budget:
                return r
        raise KeyError((policy, budget))

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "checkpoint": self.checkpoint,
            "adapter": self.adapter,
            "slack": self.slack,
            "log_length_keys": self.log_length_keys,
            "policies": self.policies,
            "budgets": self.budgets,
            "clips": len({q["clip"] for q in self.questions}),
            "wall_seconds": self.wall_seconds,
            "questions": self.questions,
            "records": [asdict(r) for r in self.records],
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> BenchResult:
        """Read back what :meth:`to_json` wrote (e.g. ``results/bench_default.json``)."""
        return BenchResult(
            records=[BenchRecord(**r) for r in data["records"]],
            questions=list(data["questions"]),
            policies=list(data["policies"]),
            budgets=list(data["budgets"]),
            data=data["data"],
            checkpoint=data.get("checkpoint"),
            adapter=data.get("adapter"),
            wall_seconds=data.get("wall_seconds", 0.0),
            slack=data.get("slack", 0.0),
            log_length_keys=data.get("log_length_keys"),
        )


def families_of(by_family: Iterable[Mapping[str, Any]]) -> list[str]:
    """The families named in any of the ``by_family`` mappings, in the worlds' order (visual,
    audio, binding, temporal, counting, when), any other after them: the four of a classic run,
    the six of a hard one, so tables and figures show what the data has and nothing else."""
    named = {family for mapping in by_family for family in mapping}
    return [f for f in ALL_FAMILIES if f in named] + sorted(named - set(ALL_FAMILIES))


def parse_budgets(text: str) -> list[Budget]:
    """``"0.05,0.1,200"`` -> budgets, in order, duplicates dropped; a bad one is refused."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise OmniMemError(
            "No budget given; pass --budgets as a comma-separated list such as 0.05,0.1,200."
        )
    return list(dict.fromkeys(parse_budget(p) for p in parts))
