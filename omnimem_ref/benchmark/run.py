"""The run loop: every policy at every budget on one folder of clips.

Each clip is decoded once (the slow part on a CPU); then ``full`` streams it once with no budget
(the upper bound) and every other policy streams it at every budget, and all the clip's
questions are asked of each compressed memory. A :class:`_Tally` per policy and budget adds up
what the sessions report and becomes a :class:`~omnimem_ref.benchmark.records.BenchRecord`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tokenizers import Tokenizer
from tqdm.auto import tqdm

from omnimem_ref.benchmark.records import FULL, BenchRecord, BenchResult
from omnimem_ref.budget import Budget
from omnimem_ref.dataset import load_dataset
from omnimem_ref.errors import OmniMemError
from omnimem_ref.evaluation import group_by_clip, kv_bytes_per_token, load_stream
from omnimem_ref.features import stream_tokens
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import prompt_length
from omnimem_ref.policies import POLICIES, make_policy
from omnimem_ref.policies.base import CompressionPolicy
from omnimem_ref.streaming.session import MemoryReport, StreamingSession
from omnimem_ref.world import ALL_FAMILIES

PolicyFactory = Callable[[], CompressionPolicy]


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
            by_family={f: sum(hits[f]) / len(hits[f]) for f in ALL_FAMILIES if hits[f]},
            n_by_family={f: len(hits[f]) for f in ALL_FAMILIES if hits[f]},
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
    for clip_name in clips:  # refuse an impossible budget before hours of work
        steps = spec.n_steps(scenes[clip_name].duration)
        expected = stream_tokens(prefix, steps, spec.tokens_per_step)
        for budget in budgets:
            check_budget(budget, budget.resolve(expected), prefix, clip_name)

    questions = [
        {"clip": q.clip, "family": q.family, "answer": q.answer}
        for name in clips
        for q in by_clip[name]
    ]
    tallies: dict[tuple[str, str | None], _Tally] = defaultdict(_Tally)
    bar = tqdm(clips, disable=not progress, desc="bench", unit="clip")
    for clip_name in bar:
        inputs = load_stream(model, data_dir, clip_name).to_inputs()  # decoded once per clip
        full_tokens = stream_tokens(prefix, inputs.n_steps, inputs.tokens_per_step)
        runs: list[tuple[str, PolicyFactory, Budget | None]] = [(FULL, factories[FULL], None)]
        runs += [(n, f, b) for b in budgets for n, f in factories.items() if n != FULL]
        for name, factory, maybe in runs:
            bar.set_postfix_str(f"{name} @ {maybe or 'none'}", refresh=False)
            tokens = full_tokens if maybe is None else maybe.resolve(full_tokens)
            check_budget(maybe, tokens, prefix, clip_name)
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
        log_length_keys=getattr(model.config, "log_length_keys", None),
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


def check_budget(budget: Budget | None, tokens: int, prefix: int, clip: str) -> None:
    """Refuse, in one sentence, a budget that resolves to fewer tokens on ``clip`` than the
    prompt prefix every policy must keep (the synthetic and the published benchmarks share it)."""
    if budget is not None and tokens < prefix:
        raise OmniMemError(
            f"Budget {budget} leaves {tokens} tokens on {clip}, fewer than the {prefix}-token "
            f"prompt prefix; use a budget of at least {prefix} tokens or a larger fraction."
        )
