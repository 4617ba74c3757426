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

The README's "Choosing the defaults" section quotes this script's output.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from omnimem_ref.benchmark import BenchResult, parse_budgets, run_benchmark
from omnimem_ref.files import atomic_write
from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.policies import OmniMem, PerturbationScorer, RedundancyAware, ScoreMass
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--budgets", default="0.05,0.1")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    model, tokenizer = load_model(None)
    budgets = parse_budgets(args.budgets)
    runs: dict[str, BenchResult] = {
        "slack=0": run_benchmark(model, tokenizer, args.data, budgets, VARIANTS, args.limit)
    }
    for slack in SLACKS:
        runs[f"slack={slack}"] = run_benchmark(
            model, tokenizer, args.data, budgets, {"omnimem": OmniMem}, args.limit, slack=slack
        )
    base = runs["slack=0"]
    rows = []
    for budget in base.budgets:
        reference = base.record("omnimem", budget)
        candidates = [(name, base.record(name, budget)) for name in VARIANTS]
        candidates += [
            (name, r.record("omnimem", budget)) for name, r in runs.items() if r is not base
        ]
        for name, record in candidates:
            interval = record_difference(reference, record, base.questions)
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
                f"{name:20s} @ {budget:5s}  {100 * record.accuracy:5.1f}%  vs omnimem "
                f"{interval}  compress {record.compress_ms_mean:.2f} ms, "
                f"{record.cost_ratio:.0%} of prefill"
            )
    if args.json:
        payload = {"data": args.data, "questions": len(base.questions), "rows": rows}
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))


if __name__ == "__main__":
    main()
