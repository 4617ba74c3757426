"""Compare two benchmark runs on the same questions: accuracy before, after, and the difference.

Example: ``omnimem compare results/without_lora.json results/with_lora.json --policies omnimem``.
Both files are written by ``omnimem bench --json`` on the same clips (the same questions in the
same order): with and without a LoRA adapter, or an old and a new implementation. For every
policy and budget present in both, the difference ``after - before`` comes with a 95% paired
bootstrap interval over clips (:mod:`omnimem_ref.stats`): both runs answered the same questions,
and questions from one clip stand or fall together, so the clip is what gets resampled.
"""

from __future__ import annotations

import argparse

from omnimem_ref.benchmark import BenchResult, load_result, parse_budgets
from omnimem_ref.errors import OmniMemError
from omnimem_ref.stats import record_difference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("before", help="benchmark JSON written by `omnimem bench --json`")
    parser.add_argument("after", help="another one, on the same questions")
    parser.add_argument("--policies", help="comma-separated policy names (default: all in both)")
    parser.add_argument("--budgets", help="comma-separated budgets (default: all in both)")


def run(args: argparse.Namespace) -> None:
    before, after = load_result(args.before), load_result(args.after)
    check_same_questions(before, after, args.before, args.after)
    pairs = shared_pairs(before, after, _names(args.policies), _budgets(args.budgets))
    print(f"before: {args.before}{_origin(before)}")
    print(f"after:  {args.after}{_origin(after)}\n")
    print(compare_table(before, after, pairs))


def check_same_questions(before: BenchResult, after: BenchResult, a: str, b: str) -> None:
    """A paired comparison needs the same questions in the same order; refuse anything else."""
    if before.questions != after.questions:
        raise OmniMemError(
            f"{a} and {b} were not run on the same questions ({len(before.questions)} and "
            f"{len(after.questions)}, or in another order); run both benchmarks on the same "
            "--data and --limit."
        )


def shared_pairs(
    before: BenchResult,
    after: BenchResult,
    policies: list[str] | None = None,
    budgets: list[str] | None = None,
) -> list[tuple[str, str | None]]:
    """The (policy, budget) pairs in both runs, in ``before``'s order, kept to ``policies`` and
    ``budgets`` when given (``full`` has no budget: it stays whenever its policy does)."""
    in_after = {(r.policy, r.budget) for r in after.records}
    pairs = [(r.policy, r.budget) for r in before.records if (r.policy, r.budget) in in_after]
    if policies is not None:
        _require_some("policy", policies, {p for p, _ in pairs})
        pairs = [(p, b) for p, b in pairs if p in policies]
    if budgets is not None:
        _require_some("budget", budgets, {b for _, b in pairs if b is not None})
        pairs = [(p, b) for p, b in pairs if b is None or b in budgets]
    if not pairs:
        raise OmniMemError("The two files have no policy and budget in common; nothing to compare.")
    return pairs


def compare_table(
    before: BenchResult, after: BenchResult, pairs: list[tuple[str, str | None]]
) -> str:
    """One row per pair: accuracy before and after (%), and ``after - before`` (points)."""
    n_clips = len({q["clip"] for q in before.questions})
    title = (
        f"{len(before.questions)} questions from {n_clips} clips; difference: after - before "
        "(points; 95% paired bootstrap interval over clips)"
    )
    header = f"{'policy':<24}{'budget':>8}{'before':>9}{'after':>9}   difference"
    lines = [title, header, "-" * (len(header) + 12)]
    for policy, budget in pairs:
        a, b = before.record(policy, budget), after.record(policy, budget)
        interval = record_difference(a, b, before.questions)
        lines.append(
            f"{policy:<24}{budget or 'none':>8}{100 * a.accuracy:>9.1f}{100 * b.accuracy:>9.1f}"
            f"   {interval}"
        )
    return "\n".join(lines)


def _require_some(kind: str, asked: list[str], present: set[str]) -> None:
    """Refuse a name that is not in both files, listing the ones that are."""
    shared = ", ".join(sorted(present)) or "none"
    for name in asked:
        if name not in present:
            raise OmniMemError(f"No {kind} {name!r} in both files; they share: {shared}.")


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise OmniMemError("No policy given; pass --policies as a list such as omnimem,vnorm.")
    return names


def _budgets(text: str | None) -> list[str] | None:
    """As ``omnimem bench`` writes them: ``0.10`` is ``0.1``."""
    return None if text is None else [str(b) for b in parse_budgets(text)]


def _origin(result: BenchResult) -> str:
    checkpoint = result.checkpoint or "shipped checkpoint"
    adapter = f", adapter {result.adapter}" if result.adapter else ""
    return f" ({checkpoint}{adapter})"
