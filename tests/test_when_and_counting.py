"""The recipe options for the hard world's `when` and `counting` questions (docs/training.md):
log time, questions that carry the time they are asked at, and onset evidence for counting."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec
from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.model.configuration import TinyOmniConfig, tiny_text_config
from omnimem_ref.model.modeling import TinyOmniModel, time_features
from omnimem_ref.model.tokenizer import PROMPT, build_tokenizer, encode, question_text
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.training.batches import make_batch
from omnimem_ref.training.evidence import instance_groups, onset_tokens, spread_loss
from omnimem_ref.training.objective import attention_supervision_loss
from omnimem_ref.training.sequence import forward_sequence
from omnimem_ref.training.train_tiny import TrainConfig, train_tiny
from omnimem_ref.world import HARD
from tests.cli_runner import run_cli
from tests.model_fixtures import OPTIONS, QUESTION, tiny_stream

HOUR = 3600.0


def timed_model(seed: int = 0) -> TinyOmniModel:
    """A tiny random TinyOmni with log time and question time."""
    torch.manual_seed(seed)
    text = tiny_text_config(
        build_tokenizer().get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2,
    )  # fmt: skip
    config = TinyOmniConfig(
        text_config=text, max_seconds=HOUR, time_periods=[8, 8192], time_ramp=False,
        time_log=True, question_time=True,
    )  # fmt: skip
    return TinyOmniModel(config).eval()


def test_log_time_is_monotone_bounded_and_makes_a_third_one_threshold():
    seconds = torch.tensor([0.0, 1.0, 20.0, 60.0, 600.0, HOUR])
    log_time = time_features(seconds, HOUR, periods=(8.0,), ramp=False, log=True)[:, 0]
    assert log_time[0] == 0 and math.isclose(log_time[-1].item(), 1.0, rel_tol=1e-6)
    assert torch.all(log_time.diff() > 0)
    # t at a third of T: the same difference of log times for a 1-minute and a 1-hour clip
    # (up to the +1 inside the log, which fades as clips grow)
    gap = [
        time_features(torch.tensor([t / 3, t]), HOUR, (8.0,), False, True)[:, 0] for t in (60, HOUR)
    ]
    differences = [float(g[1] - g[0]) for g in gap]
    assert abs(differences[0] - differences[1]) < 0.01
    assert TinyOmniConfig(time_log=True, time_ramp=False, time_periods=[8]).n_time_features == 3


def test_a_question_carries_the_stream_time_it_is_asked_at():
    """The streaming session adds the time of the end of the stream to the question's words, as
    the one-pass training sequence does with ``asked_at``; and the time changes the answer."""
    model, tokenizer, stream = timed_model(), build_tokenizer(), tiny_stream()
    session = StreamingSession(model, tokenizer)
    session.stream(stream)
    answer = session.answer(QUESTION, OPTIONS)
    streamed = torch.tensor([answer.logits[o] for o in OPTIONS])
    prefix = torch.tensor(encode(tokenizer, PROMPT))
    question = torch.tensor([[encode(tokenizer, question_text(QUESTION))]])
    option_ids = [encode(tokenizer, o)[0] for o in OPTIONS]
    with torch.no_grad():
        visual = model.encode_visual(stream.patches, stream.frame_seconds())
        audio = model.encode_audio(stream.audio, stream.audio_seconds())
        tokens = model.interleave(visual, audio).unsqueeze(0)

        def one_pass(asked_at):
            hidden, _ = forward_sequence(model, prefix, tokens, question, asked_at=asked_at)
            return model.answer_logits(hidden[0, -1])[option_ids]

        at_the_end = one_pass(stream.n_steps * stream.step_seconds)
        untimed = one_pass(None)
    assert (streamed - at_the_end).abs().max() < 1e-4
    assert (streamed - untimed).abs().max() > 1e-3


def test_the_shipped_checkpoint_ignores_the_question_time():
    model, _ = load_model()
    ids = torch.tensor([3, 4, 5])
    assert not model.config.question_time and not model.config.time_log
    assert torch.equal(model.embed_text(ids), model.embed_text(ids, seconds=100.0))


def test_onset_tokens_keep_the_first_step_of_each_instance():
    # 6 steps of 2 tokens; one instance over steps 1-2 (token 0), another at step 4 (both tokens)
    evidence = torch.zeros(6, 2, dtype=torch.bool)
    evidence[1:3, 0] = True
    evidence[4] = True
    onsets = onset_tokens(evidence.flatten(), 2).view(6, 2)
    expected = torch.zeros(6, 2, dtype=torch.bool)
    expected[1, 0] = True
    expected[4] = True
    assert torch.equal(onsets, expected)
    first_step = torch.ones(3, 2, dtype=torch.bool)  # present from step 0 on: one onset
    assert onset_tokens(first_step.flatten(), 2).sum() == 2


def hard_batch_through_model():
    """A seeded model, two hard-world clips with a counting question among theirs, and what the
    attention supervision reads: each layer's input and the sequence's layout."""
    model, tokenizer = timed_model(), build_tokenizer()
    spec = model.config.feature_spec
    batch = make_batch(np.random.default_rng(3), tokenizer, FeatureSpec(), 2, 40.0, world=HARD)
    counting = torch.tensor([[f == "counting" for f in clip] for clip in batch.families])
    assert counting.any()
    prefix = torch.tensor(encode(tokenizer, PROMPT))
    visual = model.encode_visual(batch.patches, torch.arange(batch.patches.shape[1]) * 2.0 + 1)
    audio_seconds = torch.arange(batch.audio.shape[1] * spec.audio_tokens_per_step) * 1.0 + 0.5
    audio = model.encode_audio(batch.audio, audio_seconds.view(-1, spec.audio_tokens_per_step))
    layer_inputs: list[torch.Tensor] = []
    _, layout = forward_sequence(
        model,
        prefix,
        model.interleave(visual, audio),
        batch.question_ids,
        layer_inputs=layer_inputs,
    )
    return model, batch, counting, layer_inputs, layout


def test_count_onsets_moves_the_counting_target_and_nothing_else():
    """With the ``onsets`` target only counting questions get another target (so only their loss
    changes), and the loss stays finite."""
    model, batch, counting, layer_inputs, layout = hard_batch_through_model()
    plain = attention_supervision_loss(model, layer_inputs, layout, batch)
    onsets = attention_supervision_loss(model, layer_inputs, layout, batch, "onsets")
    assert torch.isfinite(onsets) and not torch.isclose(plain, onsets)
    # without counting questions in the batch, the option changes nothing
    batch.families = [[None if f == "counting" else f for f in clip] for clip in batch.families]
    batch.evidence[counting] = False
    same = attention_supervision_loss(model, layer_inputs, layout, batch, "onsets")
    assert torch.isclose(attention_supervision_loss(model, layer_inputs, layout, batch), same)


def test_spread_loss_is_lowest_when_each_group_gets_an_equal_share():
    """Two instances (one of two tokens) and a fixed token: the loss is log 3 at the even split,
    whatever the split inside a group, and higher when the fixed token takes everything (which
    ``evidence_loss`` would accept)."""
    groups = torch.tensor([[[0, 1, 1, 2, 9]]])  # token 0 is not evidence; 9 is the fixed token

    def loss(weights: list[float]) -> float:
        log_weights = torch.tensor(weights).clamp(min=1e-30).log().view(1, 1, 1, -1)
        return float(spread_loss(log_weights, groups))

    assert math.isclose(loss([0.0, 1 / 6, 1 / 6, 1 / 3, 1 / 3]), math.log(3), rel_tol=1e-5)
    assert math.isclose(loss([0.0, 1 / 3, 0.0, 1 / 3, 1 / 3]), math.log(3), rel_tol=1e-5)
    assert loss([0.1, 0.1, 0.1, 0.2, 0.5]) > math.log(3) + 0.05
    assert loss([0.0, 0.0, 0.0, 0.0, 1.0]) > 10
    ev = torch.tensor([[0, 0, 1, 1, 1, 1, 0, 0, 1, 0]], dtype=torch.bool)
    assert instance_groups(onset_tokens(ev, 2), 2).tolist() == [[0, 0, 2, 2, 0, 0, 0, 0, 5, 0]]


def test_spread_per_head_refuses_the_one_head_shortcut():
    """Two heads, a fixed token (group 1) and one instance (group 2): one head wholly on each
    spreads the head average evenly (log 2, the lowest), but neither head spreads; per head the
    loss is the same only when every head spreads."""
    groups = torch.tensor([[[1, 2]]])  # (B, Q, total)
    split = torch.tensor([[1.0, 1e-30], [1e-30, 1.0]]).log().view(1, 2, 1, 2)  # (B, H, Q, total)
    even = torch.full((1, 2, 1, 2), 0.5).log()
    assert math.isclose(float(spread_loss(split, groups)), math.log(2), rel_tol=1e-5)
    assert float(spread_loss(split, groups, per_head=True)) > 10
    assert math.isclose(float(spread_loss(even, groups, per_head=True)), math.log(2), rel_tol=1e-5)


def test_count_spread_changes_only_the_counting_loss_and_keeps_gradients_finite():
    model, batch, counting, layer_inputs, layout = hard_batch_through_model()
    onsets = attention_supervision_loss(model, layer_inputs, layout, batch, "onsets")
    spread = attention_supervision_loss(model, layer_inputs, layout, batch, "spread")
    assert torch.isfinite(spread) and not torch.isclose(onsets, spread)
    per_head = attention_supervision_loss(model, layer_inputs, layout, batch, "spread-per-head")
    assert torch.isfinite(per_head) and per_head > spread  # each head's spread is harder to meet
    spread.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    batch.families = [[None if f == "counting" else f for f in clip] for clip in batch.families]
    batch.evidence[counting] = False
    plain = attention_supervision_loss(model, layer_inputs, layout, batch)
    assert torch.isclose(
        plain, attention_supervision_loss(model, layer_inputs, layout, batch, "spread")
    )


def test_count_boost_weighs_the_counting_part_and_nothing_else():
    """The later layers' loss is (1 - s) L_mass + boost * s * L_spread: linear in the boost, and
    the same at every boost for a batch without counting questions."""
    model, batch, counting, layer_inputs, layout = hard_batch_through_model()

    def loss(boost: float) -> torch.Tensor:
        return attention_supervision_loss(model, layer_inputs, layout, batch, "spread", boost)

    one, two, three = loss(1.0), loss(2.0), loss(3.0)
    assert two > one and torch.isclose(three - two, two - one)
    batch.families = [[None if f == "counting" else f for f in clip] for clip in batch.families]
    batch.evidence[counting] = False
    assert torch.isclose(loss(1.0), loss(3.0))


@pytest.mark.parametrize(
    "options", [["--count-boost", "3"], ["--count-boost", "0", "--count-target", "spread"]]
)
def test_a_count_boost_without_a_spread_target_or_not_above_zero_is_refused(
    tmp_path, capsys, options
):
    out = tmp_path / "x"
    code, _, err = run_cli(capsys, "train-tiny", "--out", str(out), "--steps", "1", *options)
    assert code == 2 and err.count("\n") == 1
    assert "--count-boost must be above 0, and other than 1 only with --count-target spread" in err
    assert not out.exists()


def test_train_tiny_records_the_when_and_counting_options(tmp_path):
    config = TrainConfig(
        steps=2, workers=1, clips_per_batch_at_40s=2, min_seconds=16, max_seconds=24,
        curriculum_seconds=24, log_every=1, world="hard", stretch_share=0.5,
        time_periods=(8.0, 8192.0), time_ramp=False, time_log=True, question_time=True,
        count_target="spread-per-head", count_boost=2.0,
    )  # fmt: skip
    log = train_tiny(tmp_path / "ckpt", config, progress=False)
    assert all(np.isfinite(e["answer_loss"]) for e in log)
    saved = json.loads((tmp_path / "ckpt" / "training.json").read_text())["train_config"]
    assert saved["time_log"] and saved["question_time"]
    assert saved["count_target"] == "spread-per-head" and saved["count_boost"] == 2.0
    assert TrainConfig.from_saved(saved) == config  # as resuming reads it back
    model, _ = load_model(tmp_path / "ckpt")
    assert model.config.time_log and model.config.question_time
    assert model.time_embedding.in_features == 5


def test_train_tiny_trains_a_backbone_of_another_size(tmp_path, capsys):
    """--layers and --width shape the backbone; the checkpoint records and reloads that shape,
    and a width that cannot be cut into heads of 32 in pairs is refused in one sentence."""
    out = tmp_path / "wide"
    code, _, err = run_cli(
        capsys, "train-tiny", "--out", str(out), "--steps", "2", "--batch", "2",
        "--max-seconds", "24", "--layers", "2", "--width", "192", "--workers", "1",
    )  # fmt: skip
    assert code == 0, err
    model, _ = load_model(out)
    text = model.config.text_config
    assert (text.num_hidden_layers, text.hidden_size, text.num_attention_heads) == (2, 192, 6)
    assert text.num_key_value_heads == 3 and model.vision_encoder.net[-1].out_features == 192
    code, _, err = run_cli(capsys, "train-tiny", "--out", str(tmp_path / "x"), "--width", "100")
    assert code != 0 and "--width" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("flags", "target"),
    [
        ({}, "instances"),
        ({"count_onsets": True}, "onsets"),
        ({"count_onsets": False, "count_spread": True}, "spread"),
        ({"count_spread": True, "spread_per_head": True}, "spread-per-head"),
        ({"spread_per_head": True}, "instances"),  # it did nothing without count_spread
    ],
)
def test_runs_saved_with_the_three_old_counting_flags_read_as_one_target(flags, target):
    """Checkpoints saved before ``count_target`` (the shipped hard one among them) recorded it
    as three flags; they load, and resume, as the target those flags trained with."""
    saved = asdict(TrainConfig(world="hard"))
    del saved["count_target"]
    assert TrainConfig.from_saved({**saved, **flags}).count_target == target


def test_an_unknown_count_target_is_refused_in_one_sentence(tmp_path, capsys):
    with pytest.raises(OmniMemError, match="--count-target must be one of instances, onsets"):
        TrainConfig(count_target="spread-evenly")
    with pytest.raises(SystemExit):  # argparse's own refusal, after the usage line
        run_cli(capsys, "train-tiny", "--out", str(tmp_path / "x"), "--count-target", "all")
    assert "invalid choice: 'all'" in capsys.readouterr().err
