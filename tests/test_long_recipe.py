"""The long-stream recipe (docs/training.md): hard-world batches, stretched batches, the time
features, and the shipped checkpoint left exactly as it was.

A stretched batch must look, to the model, like the steps of a longer clip streamed by the
session: each step's tokens at that step's times and rotary positions. These tests check that
against the session's own numbering (``streaming/stream.py``), not against a copy of the formula.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from omnimem_ref.dataset import load_dataset
from omnimem_ref.evaluation import group_by_clip, load_stream
from omnimem_ref.features import FeatureSpec
from omnimem_ref.model.checkpoint import DEFAULT_CHECKPOINT, load_model, trained_world
from omnimem_ref.model.configuration import TinyOmniConfig
from omnimem_ref.model.modeling import time_features
from omnimem_ref.model.tokenizer import PROMPT, build_tokenizer, encode
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.streaming.stream import audio_seconds, frame_seconds, step_meta
from omnimem_ref.training.batches import make_batch, stretch_factor, stretch_steps, stretched
from omnimem_ref.training.finetune import FinetuneConfig, finetune
from omnimem_ref.training.objective import stream_embeddings, stream_positions
from omnimem_ref.training.sequence import forward_sequence
from omnimem_ref.training.train_tiny import TrainConfig, duration_for_step, train_tiny
from omnimem_ref.world import HARD
from tests.cli_runner import run_cli
from tests.model_fixtures import tiny_model

ROOT = Path(__file__).resolve().parent.parent
HOUR_PERIODS = (8.0, 32.0, 128.0, 512.0, 2048.0, 8192.0)

# The shipped checkpoint's option logits on data_samples/tiny clip_0000 at full memory, measured
# before time features became configurable (rounded to 4 decimals).
SHIPPED_LOGITS = {
    "what shape was the cyan object ?": [-3.732, 9.1793, -3.7141, -3.6765],
    "what was the pitch of the loudest tone ?": [7.7859, -1.7188, -4.8077, -4.1635],
    "what colour was on screen when the low tone played ?": [-2.6291, -0.4948, 11.6364, 0.3462],
    "which came first : the magenta object or the cyan object ?": [-8.0582, 4.2463],
}


def test_an_old_config_keeps_the_old_time_features():
    """The shipped config.json predates ``time_periods`` and ``time_ramp``: it loads with the
    ramp t / 120 and periods 8, 32, 128 s, the 7 features it was trained with."""
    saved = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    assert "time_periods" not in saved and "time_ramp" not in saved
    config = TinyOmniConfig(**saved)
    assert config.time_periods == [8.0, 32.0, 128.0] and config.time_ramp
    assert config.n_time_features == 7
    t = torch.tensor([0.0, 1.0, 37.5, 119.0])
    angles = 2 * torch.pi * t.unsqueeze(-1) / torch.tensor([8.0, 32.0, 128.0])
    old = torch.cat([t.unsqueeze(-1) / 120.0, angles.sin(), angles.cos()], dim=-1)
    new = time_features(t, config.max_seconds, config.time_periods, config.time_ramp)
    assert torch.allclose(new, old, atol=1e-6)


def test_the_shipped_checkpoint_answers_exactly_as_before():
    model, tokenizer = load_model()
    assert model.time_embedding.in_features == 7
    questions = group_by_clip(load_dataset(ROOT / "data_samples" / "tiny")[0])["clip_0000"]
    session = StreamingSession(model, tokenizer)
    session.stream(load_stream(model, ROOT / "data_samples" / "tiny", "clip_0000"))
    for q in questions:
        logits = list(session.answer(q.question, q.options).logits.values())
        assert logits == pytest.approx(SHIPPED_LOGITS[q.question], abs=2e-4), q.question


def test_hour_time_features_are_bounded_and_tell_an_hour_apart():
    """Without the ramp every feature stays in [-1, 1] at any time; with a longest period of
    8192 s (over twice an hour) no two instants of an hour share their features."""
    t = torch.arange(0.0, 3 * 3600.0, 1.0)
    features = time_features(t, 3600.0, HOUR_PERIODS, ramp=False)
    assert features.shape == (len(t), 12) and features.abs().max() <= 1.0
    hour = features[:3600]
    nearest = torch.cdist(hour[::60], hour).topk(2, largest=False).values[:, 1]
    assert nearest.min() > 1e-3  # only the instant itself is at distance 0


def test_stretch_factor_draws_nothing_when_off_and_spans_the_range_when_on():
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert stretch_factor(rng, 40.0, 0.0, 3600.0) == 1.0
    assert rng.bit_generator.state == before  # the shipped recipe's batch stream is untouched
    factors = np.array([stretch_factor(rng, 40.0, 1.0, 3600.0) for _ in range(2000)])
    assert factors.min() >= 1.0 and factors.max() <= 90.0
    # log-uniform lengths: half of them below the geometric mean of 40 s and an hour
    assert abs(np.mean(factors * 40.0 < np.sqrt(40.0 * 3600.0)) - 0.5) < 0.05
    half = [stretch_factor(rng, 40.0, 0.5, 3600.0) for _ in range(2000)]
    assert abs(np.mean(np.equal(half, 1.0)) - 0.5) < 0.05


def test_stretched_steps_increase_and_reach_the_longer_clip():
    assert torch.equal(stretch_steps(8, 1.0), torch.arange(8))
    steps = stretch_steps(60, 29.7)
    assert steps[0] == 0 and bool((steps.diff() >= 29).all())
    assert int(steps[-1]) == int(29.7 * 59)


@pytest.mark.parametrize("factor", [1.0, 13.25])
def test_a_stretched_batch_is_embedded_and_numbered_as_its_virtual_steps(tokenizer, factor):
    """Each step's tokens get the embeddings and rotary positions the streaming session would
    give step ``v_k`` of the longer clip (``encode_steps`` and ``step_meta``), and the questions
    start right after the last of them."""
    model, spec = tiny_model(), FeatureSpec()
    batch = stretched(make_batch(np.random.default_rng(4), tokenizer, spec, 1, 16.0), factor)
    prefix = torch.tensor(encode(tokenizer, PROMPT))
    with torch.no_grad():
        _, _, stream = stream_embeddings(model, batch)
        _, layout = forward_sequence(
            model, prefix, stream, batch.question_ids, stream_positions=stream_positions(
                model, batch, len(prefix)
            ),
        )  # fmt: skip
    virtual = stretch_steps(batch.patches.shape[1], factor)
    positions = layout.positions()
    per_step = spec.tokens_per_step
    for k, v in enumerate(virtual.tolist()):
        steps = range(v, v + 1)
        with torch.no_grad():
            visual = model.encode_visual(batch.patches[0, k : k + 1], frame_seconds(spec, steps))
            audio = model.encode_audio(batch.audio[0, k : k + 1], audio_seconds(spec, steps))
        expected = model.interleave(visual, audio)
        assert torch.allclose(stream[0, k * per_step : (k + 1) * per_step], expected, atol=1e-6)
        meta = step_meta(spec, steps, len(prefix) + v * per_step)
        first = len(prefix) + k * per_step
        assert torch.equal(positions[first : first + per_step], meta.position)
    end = len(prefix) + (int(virtual[-1]) + 1) * per_step  # one past the stream's last token
    question_start = len(prefix) + layout.stream
    assert positions[question_start] == end
    assert torch.equal(positions[: len(prefix)], torch.arange(len(prefix)))


def test_hard_world_batches_hold_all_six_families(tokenizer):
    batch = make_batch(np.random.default_rng(1), tokenizer, FeatureSpec(), 3, 60.0, world=HARD)
    asked = {f for clip in batch.families for f in clip if f is not None}
    assert asked == set(HARD.families)


def test_train_tiny_trains_the_long_recipe_on_the_hard_world(tmp_path):
    """Three steps of the GPU script's recipe at toy size: every family is logged, the world and
    the scheme are recorded, and the model saved has the hour's time features."""
    config = TrainConfig(
        steps=3, workers=1, clips_per_batch_at_40s=2, min_seconds=16, max_seconds=24,
        curriculum_seconds=24, log_every=1, world="hard", stretch_share=0.5,
        time_periods=HOUR_PERIODS, time_ramp=False,
    )  # fmt: skip
    log = train_tiny(tmp_path / "ckpt", config, progress=False)
    assert [e["step"] for e in log] == [1, 2, 3]
    assert list(log[-1]["accuracy"]) == list(HARD.families)
    assert all(np.isfinite(e["answer_loss"]) for e in log)
    saved = json.loads((tmp_path / "ckpt" / "training.json").read_text())["train_config"]
    assert saved["world"] == "hard" and saved["time_periods"] == list(HOUR_PERIODS)
    model, _ = load_model(tmp_path / "ckpt")
    assert model.config.max_seconds == 3600.0 and not model.config.time_ramp
    assert model.time_embedding.in_features == 12
    assert trained_world(tmp_path / "ckpt") == "hard"


def test_train_tiny_asks_only_the_families_named(tmp_path):
    """``--families`` (a short check): the batches ask those families and no other, the log
    tracks them alone, and the run records them, so resuming with others is refused."""
    config = TrainConfig(
        steps=2, workers=1, clips_per_batch_at_40s=2, min_seconds=16, max_seconds=24,
        log_every=1, world="hard", families=("counting", "when"),
    )  # fmt: skip
    log = train_tiny(tmp_path / "ckpt", config, progress=False)
    assert [list(e["accuracy"]) for e in log] == [["counting", "when"]] * 2
    saved = json.loads((tmp_path / "ckpt" / "training.json").read_text())["train_config"]
    assert saved["families"] == ["counting", "when"]
    assert TrainConfig(**saved).families == ("counting", "when")  # as resuming compares it


def test_short_max_seconds_caps_the_curriculum_too():
    """The first half's curriculum (64 s by default) never draws past ``max_seconds``: the model
    records ``max_seconds`` as the latest time it saw."""
    config = TrainConfig(steps=100, max_seconds=24)
    rng = np.random.default_rng(0)
    early = [duration_for_step(config, 0, rng) for _ in range(200)]
    assert max(early) <= 24 and min(early) >= config.min_seconds


def test_train_tiny_refuses_families_its_world_does_not_ask(tmp_path, capsys):
    out = str(tmp_path / "x")
    code, _, err = run_cli(capsys, "train-tiny", "--out", out, "--families", "counting")
    assert code == 2 and err.count("\n") == 1, err
    assert "The classic world does not ask counting questions" in err
    assert not (tmp_path / "x").exists()  # refused before any work
    with pytest.raises(SystemExit):  # argparse's own refusal, after the usage line
        run_cli(capsys, "train-tiny", "--out", out, "--families", "countin")
    assert "--families takes a comma-separated list" in capsys.readouterr().err


def test_finetuning_draws_from_the_world_its_base_model_learned(tmp_path):
    """An adapter must learn the base model's task: the shipped checkpoint names no world
    (classic), and a hard-world fine-tune asks all six families."""
    assert trained_world(DEFAULT_CHECKPOINT) == "classic"
    assert trained_world(tmp_path / "no-such-folder") == "classic"
    model = tiny_model()
    config = FinetuneConfig(
        steps=2, clips_per_batch=1, min_seconds=16, max_seconds=20, log_every=1, world="hard"
    )
    log = finetune(model, build_tokenizer(), tmp_path / "adapter", config, progress=False)
    assert list(log[-1]["accuracy"]) == list(HARD.families)
    saved = json.loads((tmp_path / "adapter" / "omnimem_adapter.json").read_text())
    assert saved["finetune_config"]["world"] == "hard"


def test_train_tiny_refuses_bad_long_stream_options_in_one_sentence(tmp_path, capsys):
    out = str(tmp_path / "x")
    for argv, message in (
        (["--stretch-share", "1.5"], "--stretch-share must be between 0 and 1, got 1.5."),
        (["--stretch-share", "0.5", "--stretch-seconds", "60", "--max-seconds", "120"],
         "--stretch-seconds (60) must be at least --max-seconds (120)"),
    ):  # fmt: skip
        code, _, err = run_cli(capsys, "train-tiny", "--out", out, *argv)
        assert code == 2 and err.count("\n") == 1 and message in err, err
    for option, value, message in (
        ("--time-periods", "8,-1", "expected positive periods in seconds"),
        ("--world", "mars", "invalid choice: 'mars'"),
    ):
        with pytest.raises(SystemExit):  # argparse's own refusal, after the usage line
            run_cli(capsys, "train-tiny", "--out", out, option, value)
        assert message in capsys.readouterr().err


def test_accuracy_against_length_plots_every_family_and_the_trained_range():
    from omnimem_ref.plots import plot_accuracy_vs_length

    rows = [
        {"seconds": s, "accuracy": a, "by_family": {"visual": a, "when": a / 2, "counting": 0.5}}
        for s, a in ((3600, 0.5), (60, 1.0), (600, 0.75))
    ]
    ax = plot_accuracy_vs_length(rows, trained_seconds=120)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["visual", "counting", "when", "all", "chance"]
    assert list(lines["all"].get_xdata()) == [60, 600, 3600]
    assert list(lines["all"].get_ydata()) == [100.0, 75.0, 50.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1 min", "10 min", "60 min"]
    assert len(ax.patches) == 1  # the shaded lengths of the training clips
