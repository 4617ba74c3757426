"""``omnimem cost``: compression time against prefill time on randomly initialised models."""

from __future__ import annotations

import json

import pytest
import torch

from omnimem_ref import cli
from omnimem_ref.budget import parse_budget
from omnimem_ref.cost import SHAPES, measure_cost, random_model, random_stream
from omnimem_ref.model.tokenizer import PROMPT, build_tokenizer, encode

PROMPT_TOKENS = len(encode(build_tokenizer(), PROMPT))


def test_random_model_has_the_shape_asked_for():
    shape = SHAPES["small"]
    model, _ = random_model(shape)
    text = model.config.text_config
    assert (text.num_hidden_layers, text.hidden_size) == (shape.layers, shape.hidden)
    inputs = random_stream(model.config.feature_spec, steps=3, seed=0)
    assert inputs.tokens_per_step == shape.tokens_per_step == 70
    assert inputs.audio.shape[-1] == model.config.feature_spec.audio_dim > 0


def test_measured_cost_is_the_ratio_of_the_times_it_reports():
    model, tokenizer = random_model(SHAPES["tiny"])
    budget = parse_budget("0.2")
    records = measure_cost(model, tokenizer, ["vnorm", "omnimem"], budget, steps=6)
    for r in records:
        assert r.chunks == 2 * 6 and 0 < r.compressions <= r.chunks
        assert r.prefill_ms_per_chunk > 0 and r.compress_ms_per_compression > 0
        total_compress = r.compress_ms_per_compression * r.compressions
        assert r.ratio == pytest.approx(total_compress / (r.prefill_ms_per_chunk * r.chunks))
        assert r.budget_tokens == budget.resolve(PROMPT_TOKENS + 6 * 18)


def test_cost_command_prints_and_writes_json(capsys, tmp_path):
    out = tmp_path / "cost.json"
    argv = ["cost", "--steps", "8", "--clips", "1", "--policies", "vnorm", "--json", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "vnorm" in printed and "compress/prefill" in printed
    records = json.loads(out.read_text())["records"]
    assert [r["policy"] for r in records] == ["vnorm"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cost_command_refuses_a_missing_gpu(capsys):
    assert cli.main(["cost", "--device", "cuda", "--steps", "2"]) == 2
    assert "no GPU" in capsys.readouterr().err  # one sentence, exit 2
