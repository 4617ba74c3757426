"""The streaming invariants of docs/design.md §4, on a tiny random model."""

from __future__ import annotations

import pytest
import torch

from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.tokenizer import PROMPT, encode, question_text
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.training.sequence import forward_sequence
from tests.model_fixtures import OPTIONS, QUESTION


def one_pass_option_logits(model, tokenizer, stream, visible=None) -> torch.Tensor:
    """Option logits from a single forward pass over [prompt | stream | question]."""
    prefix = torch.tensor(encode(tokenizer, PROMPT))
    with torch.no_grad():
        visual = model.encode_visual(stream.patches, stream.frame_seconds())
        audio = model.encode_audio(stream.audio, stream.audio_seconds())
        tokens = model.interleave(visual, audio).unsqueeze(0)
        question = torch.tensor([encode(tokenizer, question_text(QUESTION))])
        hidden, _ = forward_sequence(model, prefix, tokens, question.unsqueeze(0), visible)
        option_ids = [encode(tokenizer, o)[0] for o in OPTIONS]
        return model.answer_logits(hidden[0, -1])[option_ids]


def streamed_option_logits(session: StreamingSession) -> torch.Tensor:
    answer = session.answer(QUESTION, OPTIONS)
    return torch.tensor([answer.probabilities[o] for o in OPTIONS]).log()


@pytest.mark.parametrize("steps_per_chunk", [1, 3])
def test_keep_everything_streaming_equals_one_forward_pass(
    model, tokenizer, stream, steps_per_chunk
):
    session = StreamingSession(model, tokenizer, steps_per_chunk=steps_per_chunk)
    session.stream(stream)
    streamed = streamed_option_logits(session)
    one_pass = one_pass_option_logits(model, tokenizer, stream).log_softmax(-1)
    assert (streamed - one_pass).abs().max() < 1e-4


@pytest.mark.parametrize("policy", ["recent"])
def test_eviction_equals_masking_in_one_forward_pass(model, tokenizer, stream, policy):
    session = StreamingSession(model, tokenizer, make_policy(policy), 40, record_history=True)
    session.stream(stream)
    streamed = streamed_option_logits(session)
    # Rebuild the same memory as masks: each token sees what was in memory when it was processed,
    # and the question sees the final memory.
    visible = session.replay_visibility()
    n = visible.shape[-1]
    q_len = len(encode(tokenizer, question_text(QUESTION)))
    full = torch.zeros(visible.shape[0], 1, n + q_len, n + q_len, dtype=torch.bool)
    full[:, 0, :n, :n] = visible
    final = session.memory.meta.position
    for layer in range(visible.shape[0]):
        full[layer, 0, n:, final[layer]] = True
    full[:, 0, n:, n:] = torch.ones(q_len, q_len, dtype=torch.bool).tril()
    masked = one_pass_option_logits(model, tokenizer, stream, full).log_softmax(-1)
    unmasked = one_pass_option_logits(model, tokenizer, stream).log_softmax(-1)
    assert (streamed - masked).abs().max() < 1e-4
    assert (streamed - unmasked).abs().max() > 1e-4, "eviction should change the answer logits"


def test_metadata_stays_aligned_after_eviction(model, tokenizer, stream):
    full = StreamingSession(model, tokenizer)
    full.stream(stream)
    session = StreamingSession(model, tokenizer, make_policy("recent"), budget=50)
    session.stream(stream)
    meta = session.memory.meta
    assert meta is not None and meta.position.shape == (2, 50)
    for layer in range(2):
        kept = meta.position[layer]
        assert torch.all(kept[1:] > kept[:-1]), "memory keeps stream order"
        assert torch.equal(meta.modality[layer], full.memory.meta.modality[layer, kept])
        assert torch.equal(meta.seconds[layer], full.memory.meta.seconds[layer, kept])
        assert torch.equal(meta.patch[layer], full.memory.meta.patch[layer, kept])
    # Layer 0 keys depend only on the token and its position, so a kept row must hold exactly the
    # key the full session computed for that original position. (Deeper layers saw a different
    # memory, so their keys legitimately differ.)
    kept = meta.position[0]
    expected = full.memory.layer_keys(0)[:, kept]
    assert torch.allclose(session.memory.layer_keys(0), expected, atol=1e-5)


@pytest.mark.parametrize("steps_per_chunk", [1, 2])
def test_memory_never_exceeds_budget_plus_one_chunk(model, tokenizer, stream, steps_per_chunk):
    budget = 60
    session = StreamingSession(model, tokenizer, make_policy("recent"), budget, steps_per_chunk)
    chunk = steps_per_chunk * stream.tokens_per_step
    for report in session.stream(stream):
        assert report.total_tokens <= budget
        assert report.peak_tokens <= budget + chunk
    assert session.memory.cache.layers[0].keys.shape[-2] == budget


def test_memory_report_counts_each_modality(model, tokenizer, stream):
    session = StreamingSession(model, tokenizer)
    report = session.stream(stream)[-1]
    steps = stream.n_steps
    assert report.tokens["visual"] == 16 * steps
    assert report.tokens["audio"] == 2 * steps
    assert report.tokens["text"] == session.prefix_length
    head_dim = 32 // 4
    assert report.bytes["audio"] == 2 * steps * 2 * 2 * 2 * head_dim * 4  # K+V, layers, kv heads


def test_budget_below_prompt_prefix_is_refused(model, tokenizer):
    with pytest.raises(OmniMemError, match="prompt prefix"):
        StreamingSession(model, tokenizer, make_policy("recent"), budget=3)


def test_unknown_policy_lists_valid_names():
    with pytest.raises(OmniMemError, match="full.*recent"):
        make_policy("bogus")


@pytest.mark.parametrize("slack", [0.25, 0.5])
def test_slack_compresses_below_the_budget_and_less_often(model, tokenizer, stream, slack):
    """With a slack, a compression keeps (1 - slack) x budget rows, so the next chunks fit without
    compressing; memory still never holds more than the budget plus one chunk."""
    budget = 80  # 18-token steps: a slack of 20 or 40 rows holds one or two more chunks
    plain = StreamingSession(model, tokenizer, make_policy("omnimem"), budget).stream(stream)
    session = StreamingSession(model, tokenizer, make_policy("omnimem"), budget, slack=slack)
    reports = session.stream(stream)
    target = budget - int(slack * budget)
    assert all(r.total_tokens == target for r in reports if r.compressed)
    assert all(r.peak_tokens <= budget + stream.tokens_per_step for r in reports)
    assert all(r.total_tokens <= budget for r in reports)
    assert sum(r.compressed for r in reports) < sum(r.compressed for r in plain)


def test_slack_outside_zero_to_one_is_refused(model, tokenizer):
    with pytest.raises(OmniMemError, match="slack"):
        StreamingSession(model, tokenizer, make_policy("omnimem"), 60, slack=1.0)


def test_history_is_kept_only_when_asked_and_changes_nothing(model, tokenizer, stream):
    """The replay history grows by a budget's worth of positions per chunk, so a session that
    only answers questions (``omnimem eval``) keeps none; its memory and answers are the same."""
    recorded = StreamingSession(model, tokenizer, make_policy("recent"), 40, record_history=True)
    recorded.stream(stream)
    assert len(recorded.history) == 1 + stream.n_steps  # the prompt, then every chunk
    session = StreamingSession(model, tokenizer, make_policy("recent"), budget=40)  # the default
    session.stream(stream)
    assert session.history == []
    assert torch.equal(session.memory.meta.position, recorded.memory.meta.position)
    assert torch.equal(streamed_option_logits(session), streamed_option_logits(recorded))
    with pytest.raises(OmniMemError, match="record_history=True") as error:
        session.replay_visibility()
    assert "\n" not in str(error.value) and str(error.value).endswith(".")
