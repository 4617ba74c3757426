"""``omnimem cost``: compression time against prefill time on randomly initialised models, over
one budget or a sweep of memory sizes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from omnimem_ref import cli
from omnimem_ref.budget import parse_budget
from omnimem_ref.cost import (
    SHAPES,
    fill_steps,
    measure_cost,
    plan_budget,
    random_model,
    random_stream,
    steps_per_compression,
    summarise,
)
from omnimem_ref.model.tokenizer import PROMPT, build_tokenizer, encode
from omnimem_ref.streaming.session import MemoryReport

PROMPT_TOKENS = len(encode(build_tokenizer(), PROMPT))
TINY_STEP = SHAPES["tiny"].tokens_per_step  # 18


@pytest.fixture(scope="module")
def tiny():
    return random_model(SHAPES["tiny"])


def test_random_model_has_the_shape_asked_for():
    shape = SHAPES["small"]
    model, _ = random_model(shape)
    text = model.config.text_config
    assert (text.num_hidden_layers, text.hidden_size) == (shape.layers, shape.hidden)
    inputs = random_stream(model.config.feature_spec, steps=3, seed=0)
    assert inputs.tokens_per_step == shape.tokens_per_step == 70
    assert inputs.audio.shape[-1] == model.config.feature_spec.audio_dim > 0


def test_a_token_budget_streams_until_full_then_compresses_k_times():
    # Memory holds prompt + n x 18 tokens after step n; a budget of prompt + 36 holds exactly two
    # steps (the third overflows it), one of prompt + 37 also only two.
    for extra, filling in ((36, 2), (37, 2), (35, 1), (0, 0)):
        budget = PROMPT_TOKENS + extra
        assert fill_steps(budget, PROMPT_TOKENS, TINY_STEP) == filling
        plan = plan_budget(parse_budget(str(budget)), PROMPT_TOKENS, TINY_STEP, compressions=5)
        assert (plan.tokens, plan.steps) == (budget, filling + 5)
    given = plan_budget(parse_budget("500"), PROMPT_TOKENS, TINY_STEP, steps=7, compressions=5)
    assert given.steps == 7  # --steps wins


def test_a_fraction_keeps_the_old_meaning_and_slack_spaces_compressions_out():
    plan = plan_budget(parse_budget("0.1"), PROMPT_TOKENS, TINY_STEP)
    assert plan.steps == 20 and plan.tokens == round(0.1 * (PROMPT_TOKENS + 20 * TINY_STEP))
    assert steps_per_compression(1000, TINY_STEP) == 1
    # slack 0.2 frees 200 tokens: 11 more steps fit, the 12th compresses again
    assert steps_per_compression(1000, TINY_STEP, slack=0.2) == 12
    plan = plan_budget(parse_budget("1000"), PROMPT_TOKENS, TINY_STEP, compressions=3, slack=0.2)
    assert plan.steps == fill_steps(1000, PROMPT_TOKENS, TINY_STEP) + 3 * 12


def test_steady_prefill_counts_only_the_chunks_that_compressed():
    def report(compressed: bool, prefill: float, compress: float) -> MemoryReport:
        return MemoryReport(
            step=0,
            seconds=0.0,
            peak_tokens=0,
            tokens={},
            bytes={},
            compressed=compressed,
            prefill_seconds=prefill,
            compress_seconds=compress,
        )

    reports = [report(False, 0.001, 0.0), report(True, 0.004, 0.002), report(True, 0.006, 0.004)]
    plan = plan_budget(parse_budget("100"), PROMPT_TOKENS, TINY_STEP, steps=3)
    r = summarise("vnorm", plan, reports)
    assert (r.chunks, r.compressions) == (3, 2)
    assert r.steady_prefill_ms_per_chunk == pytest.approx(5.0)  # not (1 + 4 + 6) / 3
    assert r.prefill_ms_per_chunk == pytest.approx(11 / 3)
    assert r.compress_ms_per_compression == pytest.approx(3.0)
    assert r.compress_per_prefill == pytest.approx(0.6)
    assert r.ratio == pytest.approx(6 / 11)


def test_a_sweep_gives_one_record_per_policy_and_budget_with_k_compressions(tiny):
    model, tokenizer = tiny
    budgets = [parse_budget("60"), parse_budget("120")]
    records = measure_cost(model, tokenizer, ["vnorm", "recent"], budgets, compressions=3, clips=2)
    assert [(r.policy, r.budget_tokens) for r in records] == [
        ("vnorm", 60),
        ("vnorm", 120),
        ("recent", 60),
        ("recent", 120),
    ]
    for r in records:
        assert r.steps == fill_steps(r.budget_tokens, PROMPT_TOKENS, TINY_STEP) + 3
        assert r.chunks == 2 * r.steps and r.compressions == 2 * 3
        assert r.steady_prefill_ms_per_chunk > 0 and r.compress_ms_per_compression > 0
        steady = r.steady_prefill_ms_per_chunk * r.compressions
        total_compress = r.compress_ms_per_compression * r.compressions
        assert r.compress_per_prefill == pytest.approx(total_compress / steady)
        assert r.ratio == pytest.approx(total_compress / (r.prefill_ms_per_chunk * r.chunks))


def test_one_fraction_budget_still_measures_like_before(tiny):
    model, tokenizer = tiny
    budget = parse_budget("0.2")
    records = measure_cost(model, tokenizer, ["vnorm", "omnimem"], budget, steps=6, clips=2)
    for r in records:
        assert r.chunks == 2 * 6 and 0 < r.compressions <= r.chunks
        assert r.budget_tokens == budget.resolve(PROMPT_TOKENS + 6 * TINY_STEP)
        assert r.budget == "0.2"


def test_cost_command_sweeps_prints_and_writes_json_and_plot(capsys, tmp_path):
    out, plot = tmp_path / "cost.json", tmp_path / "plots" / "cost.png"
    argv = ["cost", "--budgets", "60,120", "--compressions", "2", "--policies", "vnorm"]
    assert cli.main([*argv, "--json", str(out), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "compress/prefill" in printed and "amortised" in printed
    assert "vnorm: compression ×" in printed and "for ×2 memory (60 → 120 tokens)" in printed
    saved = json.loads(out.read_text())
    assert saved["budgets"] == ["60", "120"] and saved["compressions"] == 2
    records = saved["records"]
    assert [(r["policy"], r["budget"]) for r in records] == [("vnorm", "60"), ("vnorm", "120")]
    assert all(r["compressions"] == 2 and math.isfinite(r["ratio"]) for r in records)
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert not list(plot.parent.glob(".*tmp*"))  # written atomically: no temporary file left


def test_budget_is_still_accepted_for_one_budget(capsys, tmp_path):
    out = tmp_path / "cost.json"
    argv = ["cost", "--budget", "0.2", "--steps", "4", "--policies", "vnorm", "--json", str(out)]
    assert cli.main(argv) == 0
    assert [r["budget"] for r in json.loads(out.read_text())["records"]] == ["0.2"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budgets", "60,abc"], "Budget 'abc' is not valid"),
        (["--budgets", ","], "No budget given"),
        (["--compressions", "0"], "--compressions must be at least 1"),
        (["--slack", "1"], "--slack must be in [0, 1)"),
        (["--plot", "cost.txt"], "needs a .png, .pdf or .svg"),
    ],
)
def test_cost_command_refuses_bad_options_in_one_sentence(capsys, argv, message):
    assert cli.main(["cost", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cost_command_refuses_a_missing_gpu(capsys):
    assert cli.main(["cost", "--device", "cuda", "--steps", "2"]) == 2
    assert "no GPU" in capsys.readouterr().err  # one sentence, exit 2
