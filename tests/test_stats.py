"""Paired bootstrap intervals over clips: the statistics, the report's tables, ``omnimem compare``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnimem_ref.benchmark import BenchRecord, BenchResult, report, write_json
from omnimem_ref.errors import OmniMemError
from omnimem_ref.stats import (
    Interval,
    accuracy_interval,
    answered_right,
    paired_bootstrap,
    record_difference,
)
from tests.cli_runner import run_cli

CLIPS, PER_CLIP = 20, 4
CLUSTERS = [f"clip_{c:02d}" for c in range(CLIPS) for _ in range(PER_CLIP)]
DIFFERENCE_TITLE = (
    "Difference from omnimem at the same budget (points; 95% paired bootstrap interval over clips)"
)


def hits(rule) -> list[bool]:
    """One answer per question, right where ``rule(clip, question)`` holds."""
    return [bool(rule(c, i)) for c in range(CLIPS) for i in range(PER_CLIP)]


def baseline(c: int, i: int) -> bool:
    """Question 0 right on every clip, question 1 on every other one: 1 or 2 of 4 per clip."""
    return i == 0 or (i == 1 and c % 2 == 0)


BASELINE = hits(baseline)


# ---------------------------------------------------------------------------------------------
# paired_bootstrap


def test_identical_answers_differ_by_exactly_zero():
    interval = paired_bootstrap(BASELINE, BASELINE, CLUSTERS)
    assert interval == Interval(0.0, 0.0, 0.0)
    assert not interval.excludes_zero
    assert str(interval) == "+0.0 [+0.0, +0.0]"


def test_an_improvement_on_every_clip_excludes_zero():
    # B also gets question 3 right on every clip, and question 2 on every third clip.
    better = hits(lambda c, i: baseline(c, i) or i == 3 or (i == 2 and c % 3 == 0))
    interval = paired_bootstrap(BASELINE, better, CLUSTERS)
    assert interval.estimate == pytest.approx(100 * (sum(better) - sum(BASELINE)) / len(CLUSTERS))
    assert 0 < interval.low < interval.estimate < interval.high
    assert interval.excludes_zero


def test_a_difference_on_one_clip_of_many_is_wide_and_includes_zero():
    # B gets all four questions of clip 0 right where A got them all wrong; elsewhere the same.
    a = hits(lambda c, i: c != 0 and baseline(c, i))
    b = hits(lambda c, i: c == 0 or baseline(c, i))
    interval = paired_bootstrap(a, b, CLUSTERS)
    assert interval.estimate == pytest.approx(100 * PER_CLIP / len(CLUSTERS))  # +5 points
    # Clip 0 is missing from about a third of the resamples ((19/20)^20 = 0.36): zero is inside.
    assert interval.low == 0.0 and not interval.excludes_zero
    assert interval.high - interval.low >= 2 * interval.estimate


def test_the_same_seed_gives_the_same_interval():
    rng = np.random.default_rng(3)
    a, b = rng.random(len(CLUSTERS)) < 0.5, rng.random(len(CLUSTERS)) < 0.6
    first = paired_bootstrap(a, b, CLUSTERS, seed=7)
    assert paired_bootstrap(a, b, CLUSTERS, seed=7) == first
    assert paired_bootstrap(b, a, CLUSTERS, seed=7) == Interval(
        -first.estimate, -first.high, -first.low
    )


def test_matches_the_formula_question_by_question():
    """d* = 100 (Σ_r b_{j_r} - Σ_r a_{j_r}) / Σ_r n_{j_r}, written out on the questions of each
    resampled clip (clips of unequal size, so pooling is not averaging clip accuracies)."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 6, size=12)
    clusters = np.repeat(np.arange(12), sizes)
    a, b = rng.random(len(clusters)) < 0.5, rng.random(len(clusters)) < 0.7
    n_resamples = 200
    draws = np.random.default_rng(0).integers(12, size=(n_resamples, 12))  # what seed 0 draws
    diffs = []
    for clips in draws:
        rows = np.concatenate([np.flatnonzero(clusters == j) for j in clips])
        diffs.append(100 * (b[rows].mean() - a[rows].mean()))
    low, high = np.quantile(diffs, [0.025, 0.975])
    interval = paired_bootstrap(a, b, clusters, n_resamples=n_resamples, seed=0)
    assert interval.estimate == pytest.approx(100 * (b.mean() - a.mean()))
    assert (interval.low, interval.high) == pytest.approx((low, high))


def test_interval_text_and_sign():
    assert str(Interval(2.5, 0.8, 4.1)) == "+2.5 [+0.8, +4.1]"
    assert str(Interval(-0.04, -1.26, 0.0)) == "+0.0 [-1.3, +0.0]"  # never "-0.0"
    assert Interval(-2.0, -3.0, -0.1).excludes_zero
    assert not Interval(1.0, 0.0, 2.0).excludes_zero


def test_answers_and_clips_must_line_up():
    with pytest.raises(ValueError):
        paired_bootstrap([True, False], [True], ["a", "a"])
    with pytest.raises(ValueError):
        paired_bootstrap([], [], [])


# ---------------------------------------------------------------------------------------------
# Records, the report and `omnimem compare`

QUESTIONS = [{"clip": clip, "family": "audio", "answer": "yes"} for clip in CLUSTERS]


def record(policy: str, budget: str | None, right: list[bool]) -> BenchRecord:
    """A record whose answers are right exactly where ``right`` says; the other fields are
    plausible numbers that the tables print."""
    accuracy = sum(right) / len(right)
    return BenchRecord(
        policy=policy,
        budget=budget,
        n=len(right),
        accuracy=accuracy,
        by_family={"audio": accuracy},
        n_by_family={"audio": len(right)},
        clips=CLIPS,
        budget_tokens=40.0,
        clips_without_eviction=0,
        peak_kv_tokens=58,
        peak_kv_bytes=58 * 1024,
        max_kept_tokens=40.0,
        kept_tokens={"visual": 30.0, "audio": 10.0},
        chunks=12 * CLIPS,
        compressions=10 * CLIPS,
        prefill_seconds=2.0,
        compress_seconds=1.0,
        cost_ratio=0.5,
        compress_ms_mean=5.0,
        prefill_ms_mean=8.0,
        predictions=["yes" if r else "no" for r in right],
    )


def result(records: list[BenchRecord], questions: list[dict] | None = None) -> BenchResult:
    policies = list(dict.fromkeys(r.policy for r in records if r.policy != "full"))
    budgets = list(dict.fromkeys(r.budget for r in records if r.budget is not None))
    return BenchResult(
        records=records,
        questions=QUESTIONS if questions is None else questions,
        policies=policies,
        budgets=budgets,
        data="data/test",
        checkpoint=None,
        wall_seconds=1.0,
    )


ALL_RIGHT = [True] * len(CLUSTERS)
QUARTER = hits(lambda c, i: i == 0)  # one question of four right on every clip
HALF = hits(lambda c, i: i < 2)


def test_record_difference_reads_the_predictions():
    interval = record_difference(record("a", "0.1", QUARTER), record("b", "0.1", HALF), QUESTIONS)
    assert interval == Interval(25.0, 25.0, 25.0)  # +25 points on every clip


def test_accuracy_interval_is_the_accuracy_with_clips_resampled():
    assert answered_right(record("a", "0.1", QUARTER), QUESTIONS) == QUARTER
    assert accuracy_interval(record("a", "0.1", QUARTER), QUESTIONS) == Interval(25.0, 25.0, 25.0)
    with pytest.raises(OmniMemError, match="rerun `omnimem bench --json`"):
        answered_right(record("a", "0.1", QUARTER[:-1]), QUESTIONS)


def difference_rows(text: str) -> list[str]:
    """The rows of the report's difference table (below its title, header and rule)."""
    return text.split(DIFFERENCE_TITLE + "\n")[1].split("\n\n")[0].splitlines()[2:]


def test_report_prints_the_difference_table():
    bench = result(
        [
            record("full", None, ALL_RIGHT),
            record("omnimem", "0.1", HALF),
            record("recent", "0.1", QUARTER),
            record("omnimem-no-alloc", "0.1", QUARTER),
        ]
    )
    text = report(bench)
    assert text == report(bench)  # a fixed seed: the same text every time
    table = difference_rows(text)
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in table}
    assert rows == {
        "full": "+50.0 [+50.0, +50.0]",
        "recent": "-25.0 [-25.0, -25.0]",
        "omnimem-no-alloc": "-25.0 [-25.0, -25.0]",
    }
    assert "omnimem-no-alloc (omnimem)           25.0  -25.0 [-25.0, -25.0]" in text  # ablations
    # Without omnimem there is nothing to take differences from.
    assert DIFFERENCE_TITLE not in report(result([record("recent", "0.1", QUARTER)]))


def test_report_without_predictions_prints_a_dash():
    old = record("recent", "0.1", QUARTER)
    old.predictions = []  # a JSON from before answers were kept
    text = report(result([record("omnimem", "0.1", HALF), old]))
    table = difference_rows(text)
    assert [line.split() for line in table] == [["recent", "–"]]


@pytest.fixture
def before_after(tmp_path: Path) -> tuple[Path, Path]:
    """Without and with an adapter: omnimem gains 25 points on every clip, full is unchanged."""
    before = result([record("full", None, ALL_RIGHT), record("omnimem", "0.1", QUARTER)])
    after = result([record("full", None, ALL_RIGHT), record("omnimem", "0.1", HALF)])
    after.adapter = "runs/lora"
    return write_json(before, tmp_path / "before.json"), write_json(after, tmp_path / "after.json")


def test_compare_prints_before_after_and_the_difference(capsys, before_after):
    code, out, err = run_cli(capsys, "compare", *map(str, before_after))
    assert code == 0 and err == ""
    assert "80 questions from 20 clips" in out and "adapter runs/lora" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("full", "omnimem"))]
    assert rows == [
        ["full", "none", "100.0", "100.0", "+0.0", "[+0.0,", "+0.0]"],
        ["omnimem", "0.1", "25.0", "50.0", "+25.0", "[+25.0,", "+25.0]"],
    ]
    # Filters; a budget is read as `omnimem bench` writes it (0.10 is 0.1).
    code, out, _ = run_cli(
        capsys, "compare", *map(str, before_after), "--policies", "omnimem", "--budgets", "0.10"
    )
    assert code == 0 and "omnimem" in out and "\nfull" not in out


def test_compare_refuses_different_questions(capsys, before_after, tmp_path):
    fewer = QUESTIONS[:-PER_CLIP]  # the last clip left out, as with a smaller --limit
    other = result([record("omnimem", "0.1", QUARTER[:-PER_CLIP])], questions=fewer)
    path = write_json(other, tmp_path / "other.json")
    code, out, err = run_cli(capsys, "compare", str(before_after[0]), str(path))
    assert code == 2 and out == ""
    assert "were not run on the same questions (80 and 76" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policies", "snapkv"], "No policy 'snapkv' in both files; they share: full, omnimem."),
        (["--budgets", "0.2"], "No budget '0.2' in both files; they share: 0.1."),
        (["--budgets", "abc"], "Budget 'abc' is not valid"),
    ],
)
def test_compare_refuses_what_is_not_in_both(capsys, before_after, extra, message):
    code, _, err = run_cli(capsys, "compare", *map(str, before_after), *extra)
    assert code == 2 and message in err and err.count("\n") == 1


def test_compare_missing_file_is_one_sentence(capsys, before_after, tmp_path):
    code, _, err = run_cli(capsys, "compare", str(before_after[0]), str(tmp_path / "none.json"))
    assert code == 2 and "No benchmark results at" in err and err.count("\n") == 1


def test_each_ablation_is_compared_with_the_policy_it_differs_from_by_one_change():
    """The attention-score ablation needs queries, so it is compared with omnimem-tail (the same
    chunk-tail queries), not with omnimem (no queries): one change each."""
    bench = result(
        [
            record("full", None, ALL_RIGHT),
            record("omnimem", "0.1", ALL_RIGHT),
            record("omnimem-tail", "0.1", HALF),
            record("omnimem-no-perturb", "0.1", QUARTER),
        ]
    )
    text = report(bench)
    assert "omnimem-tail (omnimem)               50.0  -50.0 [-50.0, -50.0]" in text
    assert "omnimem-no-perturb (omnimem-tail)    25.0  -25.0 [-25.0, -25.0]" in text
