"""``scripts/merge_bench.py``: a benchmark split over processes merges back into one run, and runs
of different models or clips are refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from omnimem_ref.benchmark import load_result
from tests.script_loader import load_script

RUN = Path(__file__).resolve().parents[1] / "results" / "bench_hard_fourth.json"
merge_bench = load_script("merge_bench")


def only(result, policies):
    """The part of ``result`` a run given only ``policies`` would have written (full included)."""
    keep = {"full", *policies}
    return replace(
        result,
        policies=list(policies),
        records=[r for r in result.records if r.policy in keep],
    )


def records_by_key(result):
    return {(r.policy, r.budget): r for r in result.records}


def test_two_halves_of_a_run_merge_back_into_it():
    whole = only(load_result(RUN), ["streammem", "omnimem", "vnorm-per-head"])
    first, second = only(whole, ["vnorm-per-head", "streammem"]), only(whole, ["omnimem"])
    merged = merge_bench.merged(second, first)
    assert records_by_key(merged) == records_by_key(whole)
    assert merged.policies == ["streammem", "omnimem", "vnorm-per-head"]  # the registry's order
    assert [r.budget for r in merged.records if r.policy == "omnimem"] == whole.budgets


def test_a_rerun_replaces_the_policy_it_holds():
    whole = load_result(RUN)
    rerun = only(whole, ["omnimem"])
    rerun.records = [
        replace(r, accuracy=0.5) if r.policy == "omnimem" else r for r in rerun.records
    ]
    merged = merge_bench.merged(whole, rerun)
    assert {r.accuracy for r in merged.records if r.policy == "omnimem"} == {0.5}
    assert len(merged.records) == len(whole.records)


def test_runs_of_another_model_or_other_budgets_are_refused():
    whole = load_result(RUN)
    other_model = only(whole, ["omnimem"])
    full = other_model.full
    other_model.records = [
        replace(r, predictions=["?"] * len(r.predictions)) if r is full else r
        for r in other_model.records
    ]
    with pytest.raises(ValueError, match="not the same model"):
        merge_bench.merged(whole, other_model)
    with pytest.raises(ValueError, match="budgets"):
        merge_bench.merged(whole, replace(whole, budgets=whole.budgets[:1]))
