"""Choose OmniMem's defaults on the validation seed, never on the benchmark's test clips.

    omnimem generate --out runs/validation --n 100 --seed 2026
    python scripts/choose_defaults.py --data runs/validation --json results/validation_defaults.json

Streams every validation clip under variants of ``omnimem`` that differ in one setting each, at
5% and 10% of the stream, and prints accuracy with each variant's paired difference from the
default (95% bootstrap interval over clips). The settings compared:

- ``proxy``: no query (``uniform``), the chunk's last tokens (``tail``), a generic prompt
  (``prompt``), or a mixture of two;
- ``heads``: the exact change of the layer's output (``sum``, the definition) or the mean of the
  heads' own changes (``mean``, what this project first shipped);
- ``compare_with``: the linear-time redundancy step (16) or the all-pairs reference (``None``);
- ``slack``: compress to the budget after every chunk (0) or to 90% / 75% of it, so one
  compression serves several chunks.

And the one setting this project adds to two baselines to run them in a stream: how much of the
free memory SnapKV's (and CriticalKV's first stage's) protected observation window may take
(``window_share``: a quarter, half, three quarters, or all of it as in the paper), each compared
with the default half.

    python scripts/choose_defaults.py --data runs/validation --only window \
        --json results/validation_window_rule.json

The README's "Choosing the defaults" section quotes this script's output.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from omnimem_ref.benchmark import BenchRecord, BenchResult, parse_budgets, run_benchmark
from omnimem_ref.budget import Budget
from omnimem_ref.files import atomic_write
from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.policies import (
    OmniMem,
    PerturbationScorer,
    ProjectedValueNorm,
    RedundancyAware,
    ScoreMass,
    SnapKVScorer,
    TwoStage,
)
from omnimem_ref.policies.base import CompressionPolicy
from omnimem_ref.policies.composed import ComposedPolicy
from omnimem_ref.stats import record_difference


def variant(
    proxy: str = "uniform", heads: str = "sum", compare_with: int | None = 16
) -> Callable[[], CompressionPolicy]:
    def make() -> CompressionPolicy:
        return ComposedPolicy(
            PerturbationScorer(proxy, heads=heads),
            ScoreMass(),
            RedundancyAware(compare_with=compare_with),
        )

    return make


VARIANTS: dict[str, Callable[[], CompressionPolicy]] = {
    "omnimem": OmniMem,
    "proxy=tail": variant(proxy="tail"),
    "proxy=prompt": variant(proxy="prompt"),
    "proxy=prompt+uniform": variant(proxy="prompt+uniform"),
    "proxy=tail+uniform": variant(proxy="tail+uniform"),
    "heads=mean": variant(heads="mean"),
    "compare_with=None": variant(compare_with=None),
}
SLACKS = (0.1, 0.25)
WINDOW_SHARES = (0.25, 0.5, 0.75, 1.0)
DEFAULT_WINDOW_SHARE = 0.5


def window_variant(policy: str, share: float) -> Callable[[], CompressionPolicy]:
    """``snapkv`` or ``criticalkv`` (published defaults) with the window's share of free slots."""

    def make() -> CompressionPolicy:
        first = SnapKVScorer(window_share=share)
        if policy == "snapkv":
            return ComposedPolicy(first)
        return ComposedPolicy(TwoStage(first, ProjectedValueNorm()))

    return make


WINDOW_VARIANTS = {
    f"{policy} window_share={share}": window_variant(policy, share)
    for policy in ("snapkv", "criticalkv")
    for share in WINDOW_SHARES
}


def compare(
    result: BenchResult, candidates: dict[str, BenchRecord], reference: BenchRecord, budget: str
) -> list[dict]:
    """One row per candidate: accuracy, and its paired difference from ``reference``."""
    rows = []
    for name, record in candidates.items():
        interval = record_difference(reference, record, result.questions)
        rows.append(
            {
                "variant": name,
                "budget": budget,
                "accuracy": 100 * record.accuracy,
                "difference": [interval.estimate, interval.low, interval.high],
                "compress_ms_mean": record.compress_ms_mean,
                "cost_ratio": record.cost_ratio,
            }
        )
        print(
            f"{name:28s} @ {budget:5s}  {100 * record.accuracy:5.1f}%  vs {reference.policy} "
            f"{interval}  compress {record.compress_ms_mean:.2f} ms, "
            f"{record.cost_ratio:.0%} of prefill"
        )
    return rows


def window_rows(result: BenchResult) -> list[dict]:
    """Each window share against the default half, for SnapKV and for CriticalKV."""
    rows = []
    for budget in result.budgets:
        for policy in ("snapkv", "criticalkv"):
            names = [f"{policy} window_share={share}" for share in WINDOW_SHARES]
            reference = result.record(f"{policy} window_share={DEFAULT_WINDOW_SHARE}", budget)
            candidates = {name: result.record(name, budget) for name in names}
            rows += compare(result, candidates, reference, budget)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--budgets", default="0.05,0.1")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json")
    parser.add_argument(
        "--only", choices=("omnimem", "window"), help="one part only (default: both)"
    )
    args = parser.parse_args()
    model, tokenizer = load_model(None)
    budgets = parse_budgets(args.budgets)
    rows = []
    if args.only != "omnimem":
        windows = run_benchmark(model, tokenizer, args.data, budgets, WINDOW_VARIANTS, args.limit)
        rows += window_rows(windows)
        questions = len(windows.questions)
    if args.only != "window":
        omnimem_rows, questions = omnimem_defaults(model, tokenizer, args.data, budgets, args.limit)
        rows += omnimem_rows
    if args.json:
        payload = {"data": args.data, "questions": questions, "rows": rows}
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))


def omnimem_defaults(
    model: Any, tokenizer: Any, data: str, budgets: list[Budget], limit: int | None
) -> tuple[list[dict], int]:
    """Every OmniMem variant against the default, at every budget; and the question count."""
    runs: dict[str, BenchResult] = {
        "slack=0": run_benchmark(model, tokenizer, data, budgets, VARIANTS, limit)
    }
    for slack in SLACKS:
        runs[f"slack={slack}"] = run_benchmark(
            model, tokenizer, data, budgets, {"omnimem": OmniMem}, limit, slack=slack
        )
    base = runs["slack=0"]
    rows = []
    for budget in base.budgets:
        candidates = {name: base.record(name, budget) for name in VARIANTS}
        for name, result in runs.items():
            if result is not base:
                candidates[name] = result.record("omnimem", budget)
        rows += compare(base, candidates, base.record("omnimem", budget), budget)
    return rows, len(base.questions)


if __name__ == "__main__":
    main()
