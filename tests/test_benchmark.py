"""``omnimem bench``: every policy x budget in the outputs, budgets held, bad input refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from omnimem_ref.benchmark import (
    BenchResult,
    load_result,
    parse_budgets,
    report,
    run_benchmark,
)
from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.policies import POLICIES
from omnimem_ref.training.train_tiny import save_checkpoint
from tests.cli_runner import run_cli
from tests.model_fixtures import tiny_model

CHUNK = 18  # tokens per 2-second step: 16 patches + 2 audio tokens
RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As `omnimem bench` does by default: TinyOmni gains nothing from more threads, and on a busy
    machine extra threads spin and slow every step many times over."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(tiny_model(), out, {"note": "test"})
    return out


def test_bench_writes_every_policy_and_budget(capsys, checkpoint, small_dataset, tmp_path):
    out = tmp_path / "results"
    policies = ["recent", "vnorm", "omnimem"]
    argv = [
        "bench", "--data", str(small_dataset), "--checkpoint", str(checkpoint),
        "--budgets", "40,0.2,100000", "--policies", ",".join(policies), "--quiet",
        "--json", str(out / "b.json"), "--csv", str(out / "b.csv"), "--plot", str(out / "b.png"),
    ]  # fmt: skip
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0

    data = json.loads((out / "b.json").read_text())
    pairs = {(r["policy"], r["budget"]) for r in data["records"]}
    assert pairs == {("full", None)} | {(p, b) for p in policies for b in ("40", "0.2", "100000")}
    assert data["clips"] == 2 and len(data["questions"]) == 8
    for r in data["records"]:
        assert r["n"] == 8 and len(r["predictions"]) == 8
        assert set(r["by_family"]) <= {"visual", "audio", "binding", "temporal"}
        assert r["peak_kv_bytes"] > 0 and r["prefill_seconds"] > 0
        if r["budget"] == "40":
            assert r["max_kept_tokens"] <= 40 < r["peak_kv_tokens"] <= 40 + CHUNK
            assert r["compressions"] > 0 and r["cost_ratio"] > 0
    # A budget larger than the stream evicts nothing: same answers as full memory, and a note.
    full = next(r for r in data["records"] if r["policy"] == "full")
    for p in policies:
        big = next(r for r in data["records"] if r["policy"] == p and r["budget"] == "100000")
        assert big["clips_without_eviction"] == 2 and big["compressions"] == 0
        assert big["predictions"] == full["predictions"]
    assert "budget 100000 holds the whole stream on 2 of 2 clip(s)" in stdout
    assert "full (upper bound)" in stdout and "Cost of scoring" in stdout

    rows = list(csv.DictReader((out / "b.csv").open()))
    assert len(rows) == 1 + 3 * len(policies)
    assert (out / "b.png").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["b.csv", "b.json", "b.png"]  # no temp files
    assert load_result(out / "b.json").record("omnimem", "0.2").n == 8


@pytest.mark.slow
def test_every_policy_holds_the_budget_on_real_clips(checkpoint, small_dataset):
    """After every compression memory holds at most B tokens per layer; at most B + chunk
    between compressions; the end-of-stream memory is the budget exactly."""
    from omnimem_ref.model.checkpoint import load_model

    model, tokenizer = load_model(checkpoint)
    budgets = parse_budgets("30,0.15")
    result = run_benchmark(model, tokenizer, small_dataset, budgets, None, progress=False)
    assert isinstance(result, BenchResult)
    assert result.policies == [p for p in POLICIES if p != "full"]
    for record in result.records:
        if record.budget is None:
            continue
        tokens = record.budget_tokens  # both clips have the same length, so this is exact
        assert record.max_kept_tokens <= tokens, record.policy
        assert record.peak_kv_tokens <= tokens + CHUNK, record.policy
        assert sum(record.kept_tokens.values()) == tokens, record.policy
    text = report(result)
    assert all(p in text for p in POLICIES)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budgets", "0"], "Budget '0' is not valid"),
        (["--budgets", "0.1,1.5"], "Budget '1.5' is not valid"),
        (["--budgets", "abc"], "Budget 'abc' is not valid"),
        (["--budgets", " , "], "No budget given"),
        (["--budgets", "3"], "fewer than the 9-token prompt prefix"),
        (["--budgets", "0.001"], "fewer than the 9-token prompt prefix"),
        (["--budgets", "0.1", "--policies", "recent,bogus"], "Unknown policy 'bogus'"),
        (["--budgets", "0.1", "--policies", ","], "No policy given"),
        (["--budgets", "0.1", "--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bench_bad_input_is_one_sentence(
    capsys, checkpoint, small_dataset, tmp_path, argv, message
):
    base = ["bench", "--data", str(small_dataset), "--checkpoint", str(checkpoint), "--quiet"]
    code, _, err = run_cli(capsys, *base, "--json", str(tmp_path / "out.json"), *argv)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_bench_records_log_length_attention(capsys, checkpoint, small_dataset, tmp_path):
    """`--log-length-keys` reaches the model and the JSON; a run without it records None."""
    base = ["bench", "--data", str(small_dataset), "--checkpoint", str(checkpoint), "--quiet"]
    base += ["--budgets", "40", "--policies", "recent", "--limit", "1"]
    code, stdout, _ = run_cli(capsys, *base, "--json", str(tmp_path / "on.json"),
                              "--log-length-keys", "30")  # fmt: skip
    assert code == 0 and "log-length attention past 30 keys" in stdout
    code, stdout, _ = run_cli(capsys, *base, "--json", str(tmp_path / "off.json"))
    assert code == 0 and "log-length" not in stdout
    on, off = load_result(tmp_path / "on.json"), load_result(tmp_path / "off.json")
    assert (on.log_length_keys, off.log_length_keys) == (30, None)


def test_bench_missing_data_or_checkpoint(capsys, checkpoint, small_dataset, tmp_path):
    code, _, err = run_cli(
        capsys, "bench", "--data", str(tmp_path / "none"), "--checkpoint", str(checkpoint),
        "--budgets", "0.1",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    code, _, err = run_cli(
        capsys, "bench", "--data", str(small_dataset), "--checkpoint", str(tmp_path / "none"),
        "--budgets", "0.1",
    )  # fmt: skip
    assert code == 2 and "No checkpoint folder" in err


def test_parse_budgets_keeps_order_and_drops_duplicates():
    assert [str(b) for b in parse_budgets("200, 0.1,200")] == ["200", "0.1"]
    with pytest.raises(OmniMemError):
        parse_budgets("0.1,-5")


def test_run_benchmark_accepts_policies_built_in_code(small_dataset):
    from omnimem_ref.policies import ComposedPolicy, FixedShare, PerturbationScorer, top_k

    model, tokenizer = tiny_model(), build_tokenizer()
    mine = {"mine": lambda: ComposedPolicy(PerturbationScorer("uniform"), FixedShare(0.5), top_k)}
    result = run_benchmark(
        model, tokenizer, small_dataset, parse_budgets("40"), mine, limit=1, progress=False
    )
    assert [(r.policy, r.budget) for r in result.records] == [("full", None), ("mine", "40")]
    record = result.record("mine", "40")
    assert record.n == 4 and record.max_kept_tokens <= 40
    # Half of the 31 free slots go to audio, as the allocation says.
    assert record.kept_tokens["audio"] == round(0.5 * (40 - 9))


def test_the_classic_report_is_unchanged():
    """The committed benchmark (classic world, four families) prints exactly as committed."""
    result = load_result(RESULTS / "bench_default.json")
    assert result.families == ["visual", "audio", "binding", "temporal"]
    assert report(result) + "\n" == (RESULTS / "bench_default.txt").read_text()


def test_family_table_and_panels_show_the_six_hard_families(tmp_path):
    """A run whose records hold the hard world's six families gets a column and a panel for
    each, in the worlds' order; one without some family gets none for it."""
    from omnimem_ref.benchmark.tables import family_table
    from omnimem_ref.plots import plot_accuracy_panels

    data = json.loads((RESULTS / "bench_default.json").read_text())
    for r in data["records"]:
        r["by_family"] = {"when": 0.5, **r["by_family"], "counting": 0.25}
        r["by_family"].pop("binding")
    result = BenchResult.from_json(data)
    assert result.families == ["visual", "audio", "temporal", "counting", "when"]
    header = family_table(result).splitlines()[1].split()
    assert header[:7] == ["policy", "@", "budget", "all", "visual", "audio", "temporal"]
    assert header[7:9] == ["counting", "when"] and "binding" not in header
    figure = plot_accuracy_panels(result.records, "hard")
    titles = [ax.get_title() for ax in figure.axes[1:]]
    assert titles == [
        "visual (chance 25%)", "audio (chance 25%)", "temporal (chance 50%)",
        "counting (chance 33%)", "when (chance 33%)",
    ]  # fmt: skip
