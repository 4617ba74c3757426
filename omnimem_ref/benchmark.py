"""The benchmark: every policy at every budget on one folder of clips, tabled like the paper.

Each clip is decoded once (the slow part on a CPU); then ``full`` streams it once with no budget
(the upper bound: it never evicts, so it does not depend on the budget) and every other policy
streams it at every budget. All the clip's questions are asked of each compressed memory.

Per policy and budget the benchmark reports:

- accuracy, overall and per question family, and the number of questions ``n``;
- memory: the peak KV tokens per layer (before compression, so at most ``budget + chunk``), the
  most tokens held after a compression (at most ``budget``), bytes over all layers, and how
  many tokens of each modality were left at the end of the stream (mean over clips);
- cost: the wall time of scoring + selection + eviction as a fraction of the wall time of the
  model's own chunk prefills, amortized over the stream,
  ``Σ_chunks compress_seconds / Σ_chunks prefill_seconds`` (chunks that did not compress count
  in the denominator: that is what a stream pays), and the mean time of one compression.

A budget of tokens larger than a clip's whole stream evicts nothing on that clip; the record
counts those clips (``clips_without_eviction``) and the tables say so.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from tqdm.auto import tqdm

from omnimem_ref.budget import Budget, parse_budget
from omnimem_ref.dataset import load_dataset
from omnimem_ref.errors import OmniMemError
from omnimem_ref.evaluation import group_by_clip, kv_bytes_per_token, load_stream
from omnimem_ref.files import atomic_write
from omnimem_ref.model.modeling import MODALITY_NAMES, TinyOmniModel
from omnimem_ref.model.tokenizer import prompt_length
from omnimem_ref.policies import POLICIES, make_policy
from omnimem_ref.policies.base import CompressionPolicy
from omnimem_ref.stats import Interval, record_difference
from omnimem_ref.streaming.session import MemoryReport, StreamingSession
from omnimem_ref.world import FAMILIES

FULL = "full"
PolicyFactory = Callable[[], CompressionPolicy]


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

    @property
    def full(self) -> BenchRecord | None:
        return next((r for r in self.records if r.policy == FULL), None)

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
        )


def parse_budgets(text: str) -> list[Budget]:
    """``"0.05,0.1,200"`` -> budgets, in order, duplicates dropped; a bad one is refused."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise OmniMemError(
            "No budget given; pass --budgets as a comma-separated list such as 0.05,0.1,200."
        )
    return list(dict.fromkeys(parse_budget(p) for p in parts))


class _Tally:
    """Running totals of one policy at one budget."""

    def __init__(self) -> None:
        self.predictions: list[str] = []
        self.budget_tokens: list[int] = []
        self.without_eviction = 0
        self.peak = 0
        self.max_kept = 0.0
        self.kept: dict[str, list[float]] = defaultdict(list)
        self.chunks = 0
        self.compressions = 0
        self.prefill = 0.0
        self.compress = 0.0

    def add(self, reports: list[MemoryReport], budget: int | None, full_tokens: int) -> None:
        self.budget_tokens.append(full_tokens if budget is None else budget)
        self.without_eviction += budget is not None and budget >= full_tokens
        self.peak = max(self.peak, *(r.peak_tokens for r in reports))
        self.max_kept = max(self.max_kept, *(r.total_tokens for r in reports))
        for modality, tokens in reports[-1].tokens.items():
            self.kept[modality].append(tokens)
        self.chunks += len(reports)
        self.compressions += sum(r.compressed for r in reports)
        self.prefill += sum(r.prefill_seconds for r in reports)
        self.compress += sum(r.compress_seconds for r in reports)

    def record(
        self, policy: str, budget: str | None, questions: list[dict], bytes_per_token: int
    ) -> BenchRecord:
        hits: dict[str, list[bool]] = defaultdict(list)
        for q, choice in zip(questions, self.predictions, strict=True):
            hits[q["family"]].append(choice == q["answer"])
        every = [h for family in hits.values() for h in family]
        return BenchRecord(
            policy=policy,
            budget=budget,
            n=len(every),
            accuracy=sum(every) / max(1, len(every)),
            by_family={f: sum(hits[f]) / len(hits[f]) for f in FAMILIES if hits[f]},
            n_by_family={f: len(hits[f]) for f in FAMILIES if hits[f]},
            clips=len(self.budget_tokens),
            budget_tokens=sum(self.budget_tokens) / max(1, len(self.budget_tokens)),
            clips_without_eviction=self.without_eviction,
            peak_kv_tokens=self.peak,
            peak_kv_bytes=self.peak * bytes_per_token,
            max_kept_tokens=self.max_kept,
            kept_tokens={m: sum(v) / len(v) for m, v in self.kept.items()},
            chunks=self.chunks,
            compressions=self.compressions,
            prefill_seconds=self.prefill,
            compress_seconds=self.compress,
            cost_ratio=self.compress / self.prefill if self.prefill > 0 else 0.0,
            compress_ms_mean=1000 * self.compress / max(1, self.compressions),
            prefill_ms_mean=1000 * self.prefill / max(1, self.chunks),
            predictions=self.predictions,
        )


def run_benchmark(
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    data_dir: str | Path,
    budgets: Sequence[Budget],
    policies: Sequence[str] | Mapping[str, PolicyFactory] | None = None,
    limit: int | None = None,
    progress: bool = True,
    steps_per_chunk: int = 1,
    checkpoint: str | None = None,
    adapter: str | None = None,
    slack: float = 0.0,
) -> BenchResult:
    """Stream every clip of ``data_dir`` (the first ``limit``) under each policy and budget.

    ``policies``: registered names (default: all of them), or a mapping from a name to a factory
    for policies built in code (a notebook's own). ``full`` always runs once, with no budget.
    Every budget is checked against every clip before any clip is decoded.
    """
    started = time.perf_counter()
    factories = _factories(policies)
    if not budgets:
        raise OmniMemError("No budget given; pass at least one budget, e.g. 0.1.")
    if limit is not None and limit < 1:
        raise OmniMemError(f"--limit must be at least 1, got {limit}.")
    questions_all, scenes, _ = load_dataset(data_dir)
    by_clip = group_by_clip(questions_all)
    clips = sorted(by_clip)[:limit]
    spec = model.config.feature_spec
    prefix = prompt_length(tokenizer)
    per_step = spec.visual_tokens_per_step + spec.audio_tokens_per_step
    for clip_name in clips:  # refuse an impossible budget before hours of work
        expected = prefix + spec.n_steps(scenes[clip_name].duration) * per_step
        for budget in budgets:
            _check_budget(budget, budget.resolve(expected), prefix, clip_name)

    questions = [
        {"clip": q.clip, "family": q.family, "answer": q.answer}
        for name in clips
        for q in by_clip[name]
    ]
    tallies: dict[tuple[str, str | None], _Tally] = defaultdict(_Tally)
    bar = tqdm(clips, disable=not progress, desc="bench", unit="clip")
    for clip_name in bar:
        inputs = load_stream(model, data_dir, clip_name)
        full_tokens = prefix + inputs.n_steps * inputs.tokens_per_step
        runs: list[tuple[str, PolicyFactory, Budget | None]] = [(FULL, factories[FULL], None)]
        runs += [(n, f, b) for b in budgets for n, f in factories.items() if n != FULL]
        for name, factory, maybe in runs:
            bar.set_postfix_str(f"{name} @ {maybe or 'none'}", refresh=False)
            tokens = full_tokens if maybe is None else maybe.resolve(full_tokens)
            _check_budget(maybe, tokens, prefix, clip_name)
            session = StreamingSession(
                model,
                tokenizer,
                factory(),
                None if maybe is None else tokens,
                steps_per_chunk=steps_per_chunk,
                slack=slack,
            )
            reports = session.stream(inputs)
            tally = tallies[name, None if maybe is None else str(maybe)]
            tally.add(reports, None if maybe is None else tokens, full_tokens)
            for q in by_clip[clip_name]:
                tally.predictions.append(session.answer(q.question, q.options).choice)
    bar.close()

    per_token = kv_bytes_per_token(model)
    names = [n for n in factories if n != FULL]
    records = [tallies[FULL, None].record(FULL, None, questions, per_token)]
    records += [
        tallies[n, str(b)].record(n, str(b), questions, per_token) for n in names for b in budgets
    ]
    return BenchResult(
        records=records,
        questions=questions,
        policies=names,
        budgets=[str(b) for b in budgets],
        data=str(data_dir),
        checkpoint=checkpoint,
        wall_seconds=time.perf_counter() - started,
        adapter=adapter,
        slack=slack,
    )


def _factories(
    policies: Sequence[str] | Mapping[str, PolicyFactory] | None,
) -> dict[str, PolicyFactory]:
    if policies is None:
        policies = list(POLICIES)
    if isinstance(policies, Mapping):
        factories = dict(policies)
    else:
        for name in policies:
            make_policy(name)
        factories = {name: POLICIES[name] for name in policies}
    if not factories:
        raise OmniMemError("No policy given; pass at least one policy name, e.g. omnimem.")
    return {FULL: POLICIES[FULL], **factories}


def _check_budget(budget: Budget | None, tokens: int, prefix: int, clip: str) -> None:
    if budget is not None and tokens < prefix:
        raise OmniMemError(
            f"Budget {budget} leaves {tokens} tokens on {clip}, fewer than the {prefix}-token "
            f"prompt prefix; use a budget of at least {prefix} tokens or a larger fraction."
        )


# ---------------------------------------------------------------------------------------------
# Tables


def _percent(value: float | None) -> str:
    return "  –  " if value is None else f"{100 * value:5.1f}"


def accuracy_table(result: BenchResult) -> str:
    """Rows: policies; columns: budgets; cells: accuracy in % (full: the same in every column)."""
    first = 24
    header = f"{'policy':<{first}}" + "".join(f"{b:>9}" for b in result.budgets)
    lines = [header, "-" * len(header)]
    full = result.full
    if full is not None:
        cells = "".join(f"{_percent(full.accuracy):>9}" for _ in result.budgets)
        lines.append(f"{'full (upper bound)':<{first}}{cells}")
    for policy in result.policies:
        cells = "".join(f"{_percent(result.record(policy, b).accuracy):>9}" for b in result.budgets)
        lines.append(f"{policy:<{first}}{cells}")
    n = full.n if full is not None else 0
    title = (
        f"Accuracy (%) on {n} questions from {full.clips if full else 0} clips; "
        "budget: KV tokens per layer, or a fraction of the full stream"
    )
    return "\n".join([title, *lines])


def family_table(result: BenchResult) -> str:
    """Rows: policy x budget; columns: accuracy (%) overall and per question family."""
    families = [f for f in FAMILIES if any(f in r.by_family for r in result.records)]
    first = 34
    header = (
        f"{'policy @ budget':<{first}}{'all':>7}"
        + "".join(f"{f:>10}" for f in families)
        + f"{'audio kept':>12}"
    )
    lines = ["Accuracy (%) per question family; audio tokens kept per layer at the end", header]
    lines.append("-" * len(header))
    for r in result.records:
        label = f"{r.policy} @ {r.budget}" if r.budget is not None else f"{r.policy} (no budget)"
        cells = "".join(f"{_percent(r.by_family.get(f)):>10}" for f in families)
        audio = r.kept_tokens.get("audio", 0.0)
        lines.append(f"{label:<{first}}{_percent(r.accuracy):>7}{cells}{audio:>12.1f}")
    return "\n".join(lines)


def cost_table(result: BenchResult) -> str:
    """Rows: policies; per budget: compression time / prefill time (amortized) and ms per
    compression; then memory per budget (peak before and max after compression)."""
    first = 24
    width = 18
    header = f"{'policy':<{first}}" + "".join(f"{b:>{width}}" for b in result.budgets)
    lines = [
        "Cost of scoring + selection: Σ compress time / Σ prefill time over every chunk "
        "(ms per compression)",
        header,
        "-" * len(header),
    ]
    for policy in result.policies:
        cells = []
        for b in result.budgets:
            r = result.record(policy, b)
            cells.append(f"{100 * r.cost_ratio:7.1f}% ({r.compress_ms_mean:5.1f})")
        lines.append(f"{policy:<{first}}" + "".join(f"{c:>{width}}" for c in cells))
    full = result.full
    if full is not None:
        lines.append(f"full memory: prefill {full.prefill_ms_mean:.1f} ms per chunk on average")
    lines.append("")
    lines.append("Memory per layer (max over policies and clips)")
    mem_header = (
        f"{'budget':>10}{'budget tok':>12}{'peak tok':>10}{'kept tok':>10}{'peak bytes':>14}"
    )
    lines += [mem_header, "-" * len(mem_header)]
    for b in result.budgets:
        rows = [result.record(p, b) for p in result.policies]
        if not rows:
            continue
        peak = max(rows, key=lambda r: r.peak_kv_tokens)
        kept = max(r.max_kept_tokens for r in rows)
        lines.append(
            f"{b:>10}{rows[0].budget_tokens:>12.1f}{peak.peak_kv_tokens:>10}{kept:>10.0f}"
            f"{peak.peak_kv_bytes:>14,}"
        )
    if full is not None:
        lines.append(
            f"{'none':>10}{'':>12}{full.peak_kv_tokens:>10}{full.max_kept_tokens:>10.0f}"
            f"{full.peak_kv_bytes:>14,}"
        )
    return "\n".join(lines)


def difference(result: BenchResult, policy: str, budget: str, base: str) -> Interval | None:
    """``policy`` minus ``base`` at ``budget`` in points, with its 95% paired bootstrap interval
    over clips (:mod:`omnimem_ref.stats`; fixed seed, so the same every time); ``None`` when a
    record lacks its per-question answers (a JSON from before they were kept)."""
    a, b = result.record(base, budget), result.record(policy, budget)
    if any(len(r.predictions) != len(result.questions) for r in (a, b)):
        return None
    return record_difference(a, b, result.questions)


def _difference_cell(result: BenchResult, policy: str, budget: str, base: str) -> str:
    interval = difference(result, policy, budget, base)
    return "–" if interval is None else str(interval)


def difference_table(result: BenchResult, base: str = "omnimem") -> str | None:
    """Every other policy (``full`` first) minus ``base`` at each budget: the difference in
    points and its 95% paired bootstrap interval over clips; ``None`` if the run lacks ``base``."""
    others = [p for p in result.policies if p != base]
    others = ([FULL] if result.full is not None else []) + others
    if base not in result.policies or not others:
        return None
    first, width = 24, 26
    header = f"{'policy':<{first}}" + "".join(f"{b:>{width}}" for b in result.budgets)
    title = (
        f"Difference from {base} at the same budget "
        "(points; 95% paired bootstrap interval over clips)"
    )
    lines = [title, header, "-" * len(header)]
    for policy in others:
        cells = [_difference_cell(result, policy, b, base) for b in result.budgets]
        lines.append(f"{policy:<{first}}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


def ablation_table(result: BenchResult, base: str = "omnimem") -> str | None:
    """``base`` and its ablations (``base-no-*``) per budget: accuracy (%) and the change from
    ``base`` in points with its 95% paired bootstrap interval over clips; ``None`` if the run has
    ``base`` without any ablation."""
    ablations = [p for p in result.policies if p.startswith(f"{base}-no-")]
    if base not in result.policies or not ablations:
        return None
    first, width = 24, 32  # cells: accuracy, then the change, left-aligned
    header = f"{'policy':<{first}}" + "".join(f"{b:>5}".ljust(width) for b in result.budgets)
    title = (
        f"Ablations: accuracy (%) and change from {base} "
        "(points; 95% paired bootstrap interval over clips)"
    )
    lines = [title, header.rstrip(), "-" * len(header)]
    for policy in [base, *ablations]:
        cells = []
        for b in result.budgets:
            change = "" if policy == base else _difference_cell(result, policy, b, base)
            cells.append(f"{100 * result.record(policy, b).accuracy:5.1f}  {change}")
        lines.append((f"{policy:<{first}}" + "".join(f"{c:<{width}}" for c in cells)).rstrip())
    return "\n".join(lines)


def notes(result: BenchResult) -> list[str]:
    """One line per budget that held the whole stream of some clip (nothing evicted there)."""
    out = []
    for b in result.budgets:
        rows = [result.record(p, b) for p in result.policies]
        if rows and rows[0].clips_without_eviction:
            out.append(
                f"note: budget {b} holds the whole stream on {rows[0].clips_without_eviction} of "
                f"{rows[0].clips} clip(s), so nothing was evicted there."
            )
    return out


def report(result: BenchResult) -> str:
    """Everything the command prints: accuracy, differences from omnimem and ablations (if the
    run has them), per family, cost, notes."""
    optional = [difference_table(result), ablation_table(result)]
    parts = [accuracy_table(result), *(t for t in optional if t is not None)]
    parts += [family_table(result), cost_table(result)]
    text = "\n\n".join(parts)
    extra = notes(result)
    return text + ("\n\n" + "\n".join(extra) if extra else "")


# ---------------------------------------------------------------------------------------------
# Files


CSV_FIELDS = [
    "policy",
    "budget",
    "n",
    "accuracy",
    *(f"accuracy_{f}" for f in FAMILIES),
    *(f"n_{f}" for f in FAMILIES),
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
        for f in FAMILIES:
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
