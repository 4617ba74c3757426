"""The README's quoted numbers are the committed results files' numbers.

Each table the README quotes from a results file is read back here and compared, row by row, with
the file: a re-run that changes a number must change the README too (and the other way round).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from omnimem_ref.benchmark import load_result

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def table_after(heading: str) -> list[list[str]]:
    """The cells of the rows of the first Markdown table after ``heading`` (its header and rule
    dropped; ``heading`` may be the header line itself)."""
    assert heading in README, f"the README has no {heading!r}"
    block: list[str] = []
    for line in README.split(heading, 1)[1].splitlines():
        if line.startswith("|"):
            block.append(line)
        elif block:
            break
    cells = [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in block]
    cells = [row for row in cells if not all(re.fullmatch(r":?-+:?", c) for c in row)]
    return cells if heading.startswith("|") else cells[1:]  # a heading that is not the header


def number(cell: str) -> float:
    return float(re.match(r"[+-]?[\d.]+", cell.replace(",", "")).group())


# The README's benchmark tables: (the heading they follow, the results file they quote).
BENCHMARK_TABLES = [
    ("### Measured: every policy at 5%, 10% and 20% of the stream", "bench_default.json"),
    ("### The same benchmark on the harder world", "bench_hard_fourth.json"),
    ("#### On 30-minute clips, at a fixed number of tokens", "bench_hard_30min_fourth.json"),
]


@pytest.mark.parametrize(("heading", "results_file"), BENCHMARK_TABLES)
def test_benchmark_table_matches_the_committed_benchmark(heading, results_file):
    result = load_result(ROOT / "results" / results_file)
    rows = table_after(heading)
    budgets = result.budgets
    assert {row[0].split(" (")[0] for row in rows} >= {"omnimem", *result.policies} - {"full"}
    for row in rows:
        policy = row[0].split(" (")[0]
        for budget, cell in zip(budgets, row[1 : 1 + len(budgets)], strict=True):
            expected = 100 * result.record(policy, budget).accuracy
            assert number(cell) == pytest.approx(expected, abs=0.05), (policy, budget, cell)


def fraction_key(percent: str) -> str:
    """A table's ``"5%"`` -> ``"0.05"``, the budget key of a results file."""
    return str(float(percent.rstrip("%")) / 100)


def row_key(label: str) -> tuple[str, str | None]:
    """A comparison table's first cell -> (policy, budget key of the results file):
    ``"omnimem @ 5%"`` -> ("omnimem", "0.05"), ``"omnimem at 2,048 tokens"`` -> ("omnimem",
    "2048"), ``"full memory"`` or ``"full (upper bound)"`` -> ("full", None)."""
    label = label.split(" (")[0]
    if label.startswith("full"):
        return "full", None
    if "@" in label:
        policy, budget = (part.strip() for part in label.split("@"))
        return policy, fraction_key(budget)
    policy, _, budget = label.partition(" at ")
    return policy, budget.split(" ")[0].replace(",", "")


def rows_of_two_runs(header: str, first_file: str, second_file: str):
    """Each row of the table under ``header``, with the two runs' records it quotes, and the
    questions they share (a comparison table: a label, then the first and second run's cells)."""
    first = load_result(ROOT / "results" / first_file)
    second = load_result(ROOT / "results" / second_file)
    rows = table_after(header)
    assert rows
    for row in rows:
        policy, budget = row_key(row[0])
        yield row, first.record(policy, budget), second.record(policy, budget), first.questions


# The README's before/after tables: (their header, the run before, the run after).
BEFORE_AFTER_TABLES = [
    (
        "| `tinyomni-hard-third`, 30-minute clips | plain attention | log-length attention |",
        "bench_hard_30min_third.json",
        "bench_hard_30min_third_log_length.json",
    ),
]


@pytest.mark.parametrize(("header", "before_file", "after_file"), BEFORE_AFTER_TABLES)
def test_before_and_after_table_matches_the_committed_runs(header, before_file, after_file):
    """Each row: accuracy before, after, and the paired interval `omnimem compare` prints."""
    from omnimem_ref.stats import record_difference

    for row, a, b, questions in rows_of_two_runs(header, before_file, after_file):
        assert number(row[1]) == pytest.approx(100 * a.accuracy, abs=0.05), row
        assert number(row[2]) == pytest.approx(100 * b.accuracy, abs=0.05), row
        assert row[3] == str(record_difference(a, b, questions)), row


# The README's fine-tuning tables: (their header, the runs without and with the adapter).
FINE_TUNING_TABLES = [
    (
        "| policy @ budget | without adapter | with the shipped adapter |",
        "finetune_omnimem_without.json",
        "finetune_omnimem_with.json",
    ),
    (
        "| policy @ budget | without adapter | with the hard-world adapter |",
        "bench_hard.json",
        "bench_hard_adapter.json",
    ),
    (
        "| policy @ budget | without adapter | with the shipped hard-world adapter |",
        "bench_hard.json",
        "bench_hard_adapter_shipped.json",
    ),
    (
        "| policy @ budget | without adapter | with the hard-world checkpoint's adapter |",
        "bench_hard_fourth.json",
        "bench_hard_fourth_adapter.json",
    ),
]


@pytest.mark.parametrize(("header", "without_file", "with_file"), FINE_TUNING_TABLES)
def test_fine_tuning_table_matches_the_committed_runs(header, without_file, with_file):
    for row, without, with_adapter, _ in rows_of_two_runs(header, without_file, with_file):
        if row[0].startswith("full"):
            continue
        for cell, record in ((row[1], without), (row[2], with_adapter)):
            assert number(cell) == pytest.approx(100 * record.accuracy, abs=0.05), row


# The README's table of the hard world's training schedules: each checkpoint, its benchmark on
# the test clips and its run on the 30-minute clips.
SCHEDULES = [
    ("`tinyomni-hard`", "bench_hard.json", "bench_hard_30min.json"),
    ("`tinyomni-hard-9k`", "bench_hard_9k.json", "bench_hard_30min_9k.json"),
    ("`tinyomni-hard-third`", "bench_hard_third.json", "bench_hard_30min_third.json"),
    ("`tinyomni-hard-fourth`", "bench_hard_fourth.json", "bench_hard_30min_fourth.json"),
]


def test_schedule_table_matches_the_committed_runs():
    """Full memory (overall, counting, `when`), OmniMem at 5% and 10%, full memory on 30-minute
    clips, and each row's paired change in full memory from the row above."""
    from omnimem_ref.stats import record_difference

    rows = table_after("| checkpoint | schedule | CPU time | full memory |")
    assert [row[0] for row in rows] == [name for name, _, _ in SCHEDULES]
    previous = None
    for row, (_, results_file, long_file) in zip(rows, SCHEDULES, strict=True):
        result = load_result(ROOT / "results" / results_file)
        full = result.full
        expected = [
            full.accuracy,
            full.by_family["counting"],
            full.by_family["when"],
            result.record("omnimem", "0.05").accuracy,
            result.record("omnimem", "0.1").accuracy,
            load_result(ROOT / "results" / long_file).full.accuracy,
        ]
        for cell, value in zip([row[3], *row[5:10]], expected, strict=True):
            assert number(cell) == pytest.approx(100 * value, abs=0.05), (row[0], cell)
        change = (
            "" if previous is None else str(record_difference(previous, full, result.questions))
        )
        assert row[4] == change, row[0]
        previous = full


LENGTH_TABLES = {
    "`tinyomni-hard`": "accuracy_by_length_hard.json",
    "`tinyomni-hard-9k`": "accuracy_by_length_hard_9k.json",
    "`tinyomni-hard-fourth`": "accuracy_by_length_hard_fourth.json",
    "`tinyomni-hard-fourth`, log-length attention": "accuracy_by_length_hard_fourth_log_length.json",
}


def test_accuracy_against_clip_length_table_matches_the_committed_runs():
    rows = table_after("| checkpoint, full memory | 1 minute | 5 minutes |")
    assert [row[0] for row in rows] == list(LENGTH_TABLES)
    for row in rows:
        runs = json.loads((ROOT / "results" / LENGTH_TABLES[row[0]]).read_text())
        assert [r["seconds"] for r in runs] == [60, 300, 600, 1800, 3600]
        for cell, run in zip(row[1:], runs, strict=True):
            assert number(cell) == pytest.approx(100 * run["accuracy"], abs=0.05), (row[0], cell)


def test_cost_sweep_table_matches_the_committed_sweep():
    records = json.loads((ROOT / "results" / "cost_sweep_small.json").read_text())["records"]
    by = {(r["policy"], r["budget_tokens"]): r for r in records}
    rows = table_after("| budget (tokens per layer) | prefill / chunk |")
    for row in rows:
        budget = int(number(row[0]))
        for policy, cell in zip(
            ("vnorm", "omnimem-no-redundancy", "omnimem"), row[2:5], strict=True
        ):
            ms = by[policy, budget]["compress_ms_per_compression"]
            share = 100 * by[policy, budget]["compress_per_prefill"]
            assert number(cell) == pytest.approx(ms, rel=0.05, abs=0.5), (policy, budget, cell)
            assert f"({share:.1f}%)" in cell, (policy, budget, cell)


@pytest.mark.parametrize(("heading", "results_file"), BENCHMARK_TABLES)
def test_benchmark_intervals_in_the_readme_are_the_committed_runs(heading, results_file):
    """Each "vs omnimem" cell is the paired bootstrap interval recomputed from the committed
    per-question answers (the interval's seed is fixed, so it is the same every time)."""
    from omnimem_ref.benchmark.tables import difference

    result = load_result(ROOT / "results" / results_file)
    rows = table_after(heading)
    for row in rows:
        policy = row[0].split(" (")[0]
        if policy == "omnimem":
            continue
        differences = row[1 + len(result.budgets) : 3 + len(result.budgets)]
        for budget, cell in zip(result.budgets[:2], differences, strict=True):
            assert cell == str(difference(result, policy, budget, "omnimem")), (policy, budget)


def test_omnimem_leads_every_baseline_at_5_and_10_percent():
    """The README's headline: at 5% and 10% every baseline, per layer or per head, is below
    OmniMem with an interval that excludes zero (ablations and omnimem-per-head are not
    baselines)."""
    from omnimem_ref.benchmark.tables import difference

    result = load_result(ROOT / "results" / "bench_default.json")
    baselines = [p for p in result.policies if not p.startswith("omnimem")]
    assert "vnorm-per-head" in baselines and "snapkv" in baselines
    for budget in result.budgets[:2]:
        for policy in baselines:
            interval = difference(result, policy, budget, "omnimem")
            assert interval is not None and interval.high < 0, (policy, budget, str(interval))


def test_window_rule_table_matches_the_validation_run():
    rows = {
        (r["variant"], r["budget"]): r
        for r in json.loads((ROOT / "results" / "validation_window_rule.json").read_text())["rows"]
    }
    table = table_after("| window share of the free slots |")
    shares = ("0.25", "0.5", "0.75", "1.0")
    assert len(table) == len(shares)
    for share, row in zip(shares, table, strict=True):
        columns = [(p, b) for p in ("snapkv", "criticalkv") for b in ("0.05", "0.1")]
        for (policy, budget), cell in zip(columns, row[1:], strict=True):
            expected = rows[f"{policy} window_share={share}", budget]["accuracy"]
            assert number(cell) == pytest.approx(expected, abs=0.05), (share, policy, budget)


def test_eval_memory_table_matches_the_committed_run_and_stays_flat():
    """``scripts/eval_memory.py``'s measurement: the README quotes it, and the hour-long clip's
    peak resident memory is within 1.5x of the 5-minute clip's (the bar it was built for)."""
    measured = json.loads((ROOT / "results" / "eval_memory.json").read_text())
    runs = {round(r["minutes"]): r for r in measured["runs"]}
    for row in table_after("| clip | peak resident memory |"):
        run = runs[round(number(row[0]))]
        assert number(row[1]) == pytest.approx(run["peak_rss_mib"], abs=0.5), row
        assert number(row[2]) == pytest.approx(run["wall_seconds"], abs=0.5), row
    assert runs[60]["peak_rss_mib"] <= 1.5 * runs[5]["peak_rss_mib"]
    assert runs[60]["clip_seconds"] == 3600
    assert runs[60]["peak_kv_tokens"] <= 2048 + 18  # the budget plus one 2-second chunk


def test_hard_long_stream_table_matches_the_committed_sweep():
    """The hard world's long-stream table: accuracy and peak RSS per clip length, full memory and
    OmniMem at 2,048 tokens, as `scripts/long_streams.py` wrote them."""
    runs = json.loads((ROOT / "results" / "long_streams_hard_fourth.json").read_text())["runs"]
    by = {(r["minutes"], r["policy"]): r for r in runs}
    rows = table_after("| clip | questions | full memory: accuracy, peak RSS |")
    assert len(rows) == 4
    for row in rows:
        minutes = number(row[0])
        for policy, cell in (("full", row[2]), ("omnimem", row[3])):
            run = by[minutes, policy]
            accuracy, rss = (part.strip() for part in cell.split(",")[:2])
            assert number(accuracy) == pytest.approx(100 * run["accuracy"], abs=0.05), row
            assert number(rss) == pytest.approx(run["peak_rss_mib"], abs=0.5), row
            assert int(row[1]) == run["n"], row


def test_per_layer_or_per_head_validation_table_matches_the_committed_run():
    """The hard world's validation run that kept OmniMem per layer: both accuracies per budget,
    and the paired interval `omnimem bench` prints for choosing per head."""
    from omnimem_ref.stats import record_difference

    result = load_result(ROOT / "results" / "bench_hard_fourth_val_per_head.json")
    rows = table_after("| hard world, 100 validation clips | per layer (`omnimem`) |")
    assert [row[0] for row in rows] == ["5%", "10%", "20%"]
    for row in rows:
        budget = fraction_key(row[0])
        layer, head = result.record("omnimem", budget), result.record("omnimem-per-head", budget)
        assert number(row[1]) == pytest.approx(100 * layer.accuracy, abs=0.05), row
        assert number(row[2]) == pytest.approx(100 * head.accuracy, abs=0.05), row
        assert row[3] == str(record_difference(layer, head, result.questions)), row
