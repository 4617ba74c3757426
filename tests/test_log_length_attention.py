"""Log-length attention: the scale, what it keeps, and that a model is unchanged within ``n₀``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.model.log_length_attention import (
    LOG_LENGTH_SDPA,
    log_length_scale,
    sdpa_log_length_attention,
    use_log_length_attention,
)
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.streaming.session import StreamingSession
from tests.model_fixtures import OPTIONS, QUESTION, tiny_model, tiny_stream


def test_the_scale_is_one_up_to_the_trained_keys_and_log_n_over_log_n0_past_them() -> None:
    visible = torch.zeros(3, 4000, dtype=torch.bool)
    visible[0, :500] = visible[1, :1000] = visible[2, :4000] = True
    scale = log_length_scale(visible, trained_keys=1000).squeeze(-1)
    assert scale[:2].tolist() == [1.0, 1.0]
    assert scale[2].item() == pytest.approx(math.log(4000) / math.log(1000))


def evidence_weight(n_others: int, trained_keys: int | None) -> float:
    """The weight a query gives one evidence key whose logit is log n₀ (= log 1000) above
    ``n_others`` keys at logit 0, through the attention function (values: 1 on the evidence)."""
    d = 4
    logit = math.log(1000)
    query = torch.zeros(1, 1, 1, d)
    query[..., 0] = logit * math.sqrt(d)  # q·k / √d = log 1000 for the evidence key
    keys = torch.zeros(1, 1, n_others + 1, d)
    keys[..., 0, 0] = 1.0
    values = torch.zeros(1, 1, n_others + 1, 1)
    values[..., 0, 0] = 1.0
    mask = torch.ones(1, 1, 1, n_others + 1, dtype=torch.bool)
    layer = SimpleNamespace(config=SimpleNamespace(log_length_keys=trained_keys), training=False)
    out, _ = sdpa_log_length_attention(layer, query, keys, values, mask, scaling=d**-0.5)
    return out.flatten()[0].item()


def test_the_evidence_keeps_its_trained_weight_among_sixteen_times_the_keys() -> None:
    trained = evidence_weight(1000, trained_keys=None)  # 1/2 by construction
    plain = evidence_weight(16000, trained_keys=None)
    scaled = evidence_weight(16000, trained_keys=1000)
    assert trained == pytest.approx(0.5, abs=1e-3)
    assert plain < 0.1  # softmax alone: drowned by the other keys
    assert scaled == pytest.approx(trained, abs=0.01)  # the derivation's c s = s + log(n / n₀)


def answer_logits(model: TinyOmniModel, seconds: float) -> torch.Tensor:
    session = StreamingSession(model, build_tokenizer())
    session.stream(tiny_stream(seconds))
    logits = session.answer(QUESTION, OPTIONS).logits
    assert logits is not None
    return torch.tensor([logits[o] for o in OPTIONS])


def test_a_model_is_unchanged_within_the_trained_keys_and_sharper_past_them() -> None:
    plain = tiny_model(seed=3)
    sharp = tiny_model(seed=3)
    use_log_length_attention(sharp.backbone.config, trained_keys=200)
    # 16 s: 9 prompt + 8 steps x 18 tokens + the question: fewer than 200 keys for every query.
    assert torch.equal(answer_logits(plain, 16.0), answer_logits(sharp, 16.0))
    # 48 s: 441 stream tokens, so late tokens and the question see more than 200 keys.
    assert not torch.allclose(answer_logits(plain, 48.0), answer_logits(sharp, 48.0))


def test_the_setting_travels_with_the_checkpoint(tmp_path) -> None:
    model = tiny_model(seed=1)
    model.config.log_length_keys = 1105
    model.save_pretrained(tmp_path)
    build_tokenizer().save(str(tmp_path / "tokenizer.json"))
    loaded, _ = load_model(tmp_path)
    assert loaded.backbone.config._attn_implementation == LOG_LENGTH_SDPA
    assert loaded.backbone.layers[0].self_attn.config.log_length_keys == 1105


def test_asking_at_load_time_equals_the_setting_in_the_checkpoint(tmp_path) -> None:
    """`--log-length-keys` (load_model's argument) gives the model a config.json key gives."""
    model = tiny_model(seed=2)
    model.save_pretrained(tmp_path / "plain")
    build_tokenizer().save(str(tmp_path / "plain" / "tokenizer.json"))
    model.config.log_length_keys = 200
    model.save_pretrained(tmp_path / "keyed")
    build_tokenizer().save(str(tmp_path / "keyed" / "tokenizer.json"))
    asked, _ = load_model(tmp_path / "plain", log_length_keys=200)
    keyed, _ = load_model(tmp_path / "keyed")
    plain, _ = load_model(tmp_path / "plain")
    assert asked.config.log_length_keys == 200 and plain.config.log_length_keys is None
    assert torch.equal(answer_logits(asked, 48.0), answer_logits(keyed, 48.0))
    assert not torch.allclose(answer_logits(asked, 48.0), answer_logits(plain, 48.0))


def test_fewer_than_two_trained_keys_is_refused_in_one_sentence() -> None:
    with pytest.raises(OmniMemError, match="at least 2"):
        use_log_length_attention(tiny_model().backbone.config, trained_keys=1)
