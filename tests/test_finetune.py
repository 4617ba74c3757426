"""Budget-aware LoRA fine-tuning: the two-pass scheme, learning, saving and loading adapters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from omnimem_ref.cli import main
from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.adapter import attach_lora, load_adapter, lora_config, save_adapter
from omnimem_ref.model.tokenizer import ANSWER_SUFFIX, QUESTION_PREFIX
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.streaming.stream import StreamInputs
from omnimem_ref.training.batches import make_batch
from omnimem_ref.training.finetune import (
    answer_logits_for,
    batch_layout,
    compressed_visibility,
    finetune_step,
    select_memory,
)
from tests.model_fixtures import tiny_model


def a_batch(tokenizer, model, clips: int = 2, seconds: float = 16.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    return make_batch(rng, tokenizer, model.config.feature_spec, clips, seconds)


def tokens_per_step(model) -> int:
    spec = model.config.feature_spec
    return spec.visual_tokens_per_step + spec.audio_tokens_per_step


def trained_adapter(model, seed: int = 1):
    """Attach LoRA and give it non-zero weights (a fresh adapter is the identity)."""
    peft_model = attach_lora(model, lora_config(rank=4, alpha=8))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return peft_model


@pytest.mark.parametrize("policy", ["omnimem", "snapkv"])
def test_two_pass_masked_forward_equals_streaming(tokenizer, policy):
    """Pass 2 (one masked forward) gives the streaming session's answer logits, per question."""
    model = tiny_model()
    batch = a_batch(tokenizer, model, clips=1)
    layout = batch_layout(tokenizer, batch, tokens_per_step(model))
    inputs = StreamInputs(batch.patches[0], batch.audio[0], model.config.feature_spec)
    session = StreamingSession(model, tokenizer, make_policy(policy), 40, record_history=True)
    session.stream(inputs)
    visible = compressed_visibility(session, layout).unsqueeze(1)
    with torch.no_grad():
        masked = answer_logits_for(model, tokenizer, batch, visible)[0]
        unmasked = answer_logits_for(model, tokenizer, batch, None)[0]
    n_prefix = len(QUESTION_PREFIX.split())
    n_suffix = len(ANSWER_SUFFIX.split())
    n_questions = int((batch.answer_index[0] >= 0).sum())
    assert n_questions >= 3
    for j in range(n_questions):
        ids = batch.question_ids[0, j, : int(batch.question_last[0, j]) + 1]
        words = [tokenizer.id_to_token(int(i)) for i in ids]
        question = " ".join(words[n_prefix:-n_suffix])  # what question_text() wraps
        options = [tokenizer.id_to_token(int(i)) for i in batch.option_ids[0, j] if int(i)]
        streamed = session.answer(question, options).probabilities
        streamed_logp = torch.tensor([streamed[o] for o in options]).log()
        valid = masked[j, : len(options)].log_softmax(-1)
        assert (streamed_logp - valid).abs().max() < 1e-4
    assert (masked - unmasked).abs().nan_to_num().max() > 1e-4, "eviction must change answers"


def test_select_memory_keeps_the_budget_for_every_clip(tokenizer):
    model = tiny_model()
    batch = a_batch(tokenizer, model, clips=2)
    layout = batch_layout(tokenizer, batch, tokens_per_step(model))
    visible = select_memory(model, tokenizer, batch, "omnimem", 0.1, layout)
    assert visible.shape == (2, 2, layout.total, layout.total)
    n_context = layout.prefix + layout.stream
    budget = round(0.1 * n_context)
    seen_by_question = visible[:, :, n_context, :n_context].sum(-1)
    assert torch.all(seen_by_question == budget)


def test_a_short_run_lowers_the_loss(tokenizer):
    model = tiny_model()
    peft_model = attach_lora(model, lora_config(rank=4, alpha=8))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert trainable and all(
        "lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad
    )
    optimizer = torch.optim.AdamW(trainable, lr=3e-2)
    batch = a_batch(tokenizer, model, clips=2)
    layout = batch_layout(tokenizer, batch, tokens_per_step(model))
    visible = select_memory(model, tokenizer, batch, "recent", 0.2, layout)
    base = {n: p.clone() for n, p in model.named_parameters() if "lora_" not in n}
    losses = [
        finetune_step(peft_model, model, tokenizer, optimizer, batch, visible, 0.0)[0]
        for _ in range(25)
    ]
    assert np.mean(losses[-5:]) < losses[0] - 0.1  # measured: 1.13 -> 0.96
    for n, p in model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), f"base weight {n} must stay frozen"


def test_saved_adapter_reloads_to_identical_outputs(tokenizer, tmp_path):
    model = tiny_model()
    fingerprint_source = tiny_model()
    from omnimem_ref.model.adapter import model_fingerprint

    info = {"base_model": model_fingerprint(fingerprint_source)}
    peft_model = trained_adapter(model)
    save_adapter(peft_model, tmp_path / "adapter", info)
    batch = a_batch(tokenizer, model, clips=1)
    with torch.no_grad():
        trained = answer_logits_for(model, tokenizer, batch, None)
        base = answer_logits_for(tiny_model(), tokenizer, batch, None)
        reloaded_model = load_adapter(tiny_model(), tmp_path / "adapter")
        reloaded = answer_logits_for(reloaded_model, tokenizer, batch, None)
    finite = trained.isfinite()
    assert torch.equal(trained[finite], reloaded[finite])
    assert (trained - base)[finite].abs().max() > 1e-3, "the adapter must change the model"


def test_adapter_for_another_base_model_is_refused(tmp_path):
    from omnimem_ref.model.adapter import model_fingerprint

    model = tiny_model()
    save_adapter(trained_adapter(model), tmp_path / "a", {"base_model": "0" * 64})
    assert model_fingerprint(tiny_model(seed=0)) != model_fingerprint(tiny_model(seed=1))
    with pytest.raises(OmniMemError, match="another base model"):
        load_adapter(tiny_model(), tmp_path / "a")


def test_missing_or_corrupt_adapter_is_one_sentence(tmp_path):
    with pytest.raises(OmniMemError, match="No adapter folder"):
        load_adapter(tiny_model(), tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OmniMemError, match="not an OmniMem adapter"):
        load_adapter(tiny_model(), tmp_path / "empty")
    from omnimem_ref.model.adapter import model_fingerprint

    model = tiny_model()
    info = {"base_model": model_fingerprint(tiny_model())}
    save_adapter(trained_adapter(model), tmp_path / "broken", info)
    (tmp_path / "broken" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(OmniMemError, match="corrupt"):
        load_adapter(tiny_model(), tmp_path / "broken")


def test_cli_refuses_a_missing_adapter_without_traceback(tmp_path, capsys):
    data = tmp_path / "no-data"
    code = main(["eval", "--data", str(data), "--adapter", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and "adapter" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_bad_finetune_budgets(capsys, tmp_path):
    code = main(["finetune", "--out", str(tmp_path / "a"), "--budgets", "0.1,2"])
    err = capsys.readouterr().err
    assert code == 2 and "fractions of the stream" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--seconds", "5-10"], "from 16 to 3600 seconds"),
        (["--seconds", "90-60"], "MIN-MAX"),
        (["--seconds", "long"], "MIN-MAX"),
        (["--full-share", "1"], "--full-share must be at least 0 and below 1"),
    ],
)
def test_cli_refuses_bad_finetune_clip_lengths_and_shares(capsys, tmp_path, option, message):
    code = main(["finetune", "--out", str(tmp_path / "a"), *option])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_finetune_trains_on_the_clip_lengths_asked_for(tmp_path, capsys):
    """``--seconds 20-24``: every batch's clips are that long, and the adapter records it."""
    out = tmp_path / "a"
    argv = ["--steps", "2", "--clips", "1", "--seconds", "20-24", "--full-share", "0.5"]
    code = main(["finetune", "--out", str(out), *argv, "--budgets", "0.2"])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / "omnimem_adapter.json").read_text())
    assert saved["finetune_config"]["min_seconds"] == 20
    assert saved["finetune_config"]["max_seconds"] == 24
    assert saved["finetune_config"]["full_memory_share"] == 0.5
    assert saved["log"] and all(20 <= entry["clip_seconds"] <= 24 for entry in saved["log"])
