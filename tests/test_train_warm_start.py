"""Warm starts of ``train-tiny``: ``--init-from CKPT`` begins a new run at CKPT's weights, with
CKPT's training settings for every option left out, a fresh optimiser and schedule; it can be
stopped and resumed like any run, and what would change the model's shape is refused.

The runs are those of ``test_train_resume.py``: four steps of two 16-second clips."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec
from omnimem_ref.model.checkpoint import DEFAULT_CHECKPOINT
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.training import train_tiny as training
from omnimem_ref.training.batches import make_batch
from omnimem_ref.training.train_tiny import TrainConfig, train_tiny
from tests.cli_runner import run_cli
from tests.test_train_resume import TINY, Stopped, assert_same_run, stop_after_saving

# CKPT's own recipe differs from TrainConfig's defaults in many settings, so a test can tell
# "taken from CKPT" from "took the default".
CKPT_RECIPE = replace(TINY, world="hard", evidence_weight=0.3, time_log=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished four-step run to start from."""
    make_batch(np.random.default_rng(0), build_tokenizer(), FeatureSpec(), 2, 16.0)  # see resume
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train_tiny(out, CKPT_RECIPE, progress=False)
    return out


def saved_config(folder: Path) -> TrainConfig:
    return TrainConfig.from_saved(
        json.loads((folder / "training.json").read_text())["train_config"]
    )


def test_a_warm_start_begins_at_the_checkpoint_with_its_settings(
    checkpoint: Path, tmp_path: Path, capsys
) -> None:
    config = replace(CKPT_RECIPE, seed=1, init_from=str(checkpoint))
    start = training.new_run(tmp_path / "unused", config, "cpu")
    weights = load_file(checkpoint / "model.safetensors")
    state = start.model.state_dict()  # the saved weights, and those tied to them
    assert all(torch.equal(state[name], saved) for name, saved in weights.items())
    assert start.step == 0 and start.log == []
    assert not start.optimizer.state  # AdamW starts afresh: no moments carried over

    out = tmp_path / "warm"
    args = ["train-tiny", "--out", str(out), "--init-from", str(checkpoint), "--seed", "1"]
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and "after 4 steps" in stdout
    assert training.saved_run(out).config == config  # CKPT's settings, but for the seed given
    trained = load_file(out / "model.safetensors")
    moved = [n for n in weights if not torch.equal(trained[n], weights[n])]
    assert len(moved) > len(weights) // 2  # it trained from there


def test_a_warm_start_stopped_and_resumed_ends_bit_identical(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    config = replace(CKPT_RECIPE, seed=1, init_from=str(checkpoint))
    reference = tmp_path / "reference"
    train_tiny(reference, config, progress=False)
    out = tmp_path / "run"
    stop_after_saving(monkeypatch, 2)
    with pytest.raises(Stopped):
        train_tiny(out, config, progress=False)
    monkeypatch.undo()
    code, stdout, _ = run_cli(capsys, "train-tiny", "--resume", str(out))
    assert code == 0 and "after 4 steps" in stdout
    assert_same_run(out, reference)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--layers", "2"], "differs from the one these settings train in text_config."),
        (["--no-time-log"], "differs from the one these settings train in time_log;"),
        (["--max-seconds", "32"], "differs from the one these settings train in max_seconds;"),
    ],
)
def test_a_warm_start_refuses_settings_that_change_the_model(
    checkpoint: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    out = tmp_path / "warm"
    code, _, err = run_cli(
        capsys, "train-tiny", "--out", str(out), "--init-from", str(checkpoint), *extra
    )
    assert code == 2 and err.count("\n") == 1
    assert message in err
    assert not out.exists()  # refused before anything was written


def test_a_warm_start_refuses_a_folder_without_a_run_and_resume(
    checkpoint: Path, tmp_path: Path, capsys
) -> None:
    code, _, err = run_cli(
        capsys, "train-tiny", "--out", str(tmp_path / "w"), "--init-from", str(tmp_path)
    )
    assert code == 2 and err.count("\n") == 1
    assert "holds no training run to start from" in err and "pass a folder it wrote" in err
    code, _, err = run_cli(
        capsys, "train-tiny", "--resume", str(checkpoint), "--init-from", str(checkpoint)
    )
    assert code == 2 and "--init-from starts a new run (with --out)" in err


def test_under_the_hard_recipe_a_warm_start_may_train_on_longer_real_clips():
    """The stretch to 3,600 s sets the longest time and positions tinyomni-hard records, so
    longer real clips (--max-seconds 300) build the same model and are accepted."""
    ckpt = str(DEFAULT_CHECKPOINT.parent / "tinyomni-hard")
    hard = replace(training.saved_run(ckpt).config, init_from=ckpt, seed=1)
    model = training.warm_model(replace(hard, max_seconds=300.0))
    assert model.config.max_seconds == 3600.0
    with pytest.raises(OmniMemError, match="train in max_seconds"):
        training.warm_model(replace(hard, stretch_share=0.0, max_seconds=300.0))


def test_a_long_clip_warm_start_keeps_showing_short_clips():
    """``--curriculum-seconds``, ``--max-seconds`` and ``--short-share`` change what is drawn, not
    the model: the recipe of ``scripts/train_on_gpu.sh long`` builds tinyomni-hard-fourth's own
    model. Its first half draws the fourth's own lengths (16-120 s); in the second half half the
    steps still do, and the rest draw up to 30 minutes (a schedule on long clips alone forgot the
    short ones: docs/training.md, "Thirty minutes: what a CPU cannot train")."""
    ckpt = str(DEFAULT_CHECKPOINT.parent / "tinyomni-hard-fourth")
    recipe = replace(
        training.saved_run(ckpt).config, init_from=ckpt, seed=6, steps=1600,
        curriculum_seconds=120.0, max_seconds=1800.0, short_share=0.5,
    )  # fmt: skip
    assert training.warm_model(recipe).config.max_seconds == 3600.0
    rng = np.random.default_rng(0)
    first = [training.duration_for_step(recipe, step, rng) for step in range(800)]
    second = np.array([training.duration_for_step(recipe, step, rng) for step in range(800, 1600)])
    assert min(first) >= 16 and max(first) <= 120
    # short with probability 0.5 + 0.5 * (120 - 16) / (1800 - 16) = 0.53
    assert 0.45 < np.mean(second <= 120) < 0.61 and second.max() > 1700
    plain = replace(recipe, short_share=0.0)
    assert np.mean([training.duration_for_step(plain, 1000, rng) <= 120 for _ in range(400)]) < 0.15


@pytest.mark.parametrize(
    "extra",
    [
        ["--min-seconds", "8"],
        ["--min-seconds", "100"],  # past the first half's curriculum of 64 s
        ["--min-seconds", "300", "--curriculum-seconds", "1800", "--max-seconds", "200"],
        ["--short-share", "1.5"],
    ],
)
def test_train_tiny_refuses_clip_lengths_it_cannot_draw(tmp_path: Path, capsys, extra) -> None:
    out = tmp_path / "x"
    code, _, err = run_cli(capsys, "train-tiny", "--out", str(out), "--steps", "2", *extra)
    assert code == 2 and err.count("\n") == 1, err
    assert "every step draws a clip length between them" in err or "between 0 and 1" in err
    assert not out.exists()
