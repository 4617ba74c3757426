"""Resuming ``train-tiny``: a run stopped after a save and resumed ends bit for bit where the run
that never stopped ends, and the command refuses what it cannot resume in one sentence.

Every run here is four steps of two 16-second clips, rendered by two workers (so the stream's
position is two Generators, one a step ahead of the other), saving after every step and logging
every other one (so a save at an odd step holds a non-empty accuracy window)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from omnimem_ref import cli
from omnimem_ref.commands.train_tiny import resumed_config
from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec
from omnimem_ref.files import OLD_SUFFIX, sibling
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.training import train_tiny as training
from omnimem_ref.training.batches import make_batch
from omnimem_ref.training.train_tiny import RESUME_FOLDER, TrainConfig, train_tiny
from tests.cli_runner import run_cli

TINY = TrainConfig(
    steps=4, workers=2, clips_per_batch_at_40s=1, min_seconds=16, max_seconds=16,
    curriculum_seconds=16, warmup_steps=2, log_every=2, checkpoint_every=1,
)  # fmt: skip


# The same, with the GPU script's hard-world, long-stream recipe (docs/training.md): every batch
# is stretched (so the stream's Generators draw the stretch too) and the model has no ramp.
LONG = replace(
    TINY, world="hard", stretch_share=1.0, time_periods=(8.0, 128.0, 8192.0), time_ramp=False
)


class Stopped(Exception):
    """Stands for Ctrl-C or a killed job."""


def stop_after_saving(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make training stop right after the checkpoint of ``step`` is saved."""
    save = training.save_checkpoint

    def save_then_stop(model, out_dir, extra, also_write=None):
        save(model, out_dir, extra, also_write)
        if extra["step"] == step:
            raise Stopped

    monkeypatch.setattr(training, "save_checkpoint", save_then_stop)


def without_seconds(log: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in log]


def assert_same_run(folder: Path, reference: Path) -> None:
    """Bit-identical weights, and the same log (but for the time taken)."""
    ours = load_file(folder / "model.safetensors")
    theirs = load_file(reference / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    ours_log = json.loads((folder / "training.json").read_text())["log"]
    theirs_log = json.loads((reference / "training.json").read_text())["log"]
    assert without_seconds(ours_log) == without_seconds(theirs_log)
    assert [e["step"] for e in ours_log] == [2, 4]


@pytest.fixture(scope="module", autouse=True)
def warm_renderer() -> None:
    """Render one batch in this process first: the loader's workers are forked from it, so they
    inherit librosa's lazy imports and numba's compiled code instead of each paying about two
    seconds for them at every run (the runs here are 0.1 s a step after that)."""
    make_batch(np.random.default_rng(0), build_tokenizer(), FeatureSpec(), 2, 16.0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY trained without a stop."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train_tiny(out, TINY, progress=False)
    return out


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY saved, resumable, at step 0, without rendering a batch (read-only: copy it to
    resume it)."""
    out = tmp_path_factory.mktemp("unfinished") / "run"
    training.save_run(training.new_run(out, TINY, "cpu"), out)
    return out


def test_a_run_stopped_half_way_and_resumed_ends_bit_identical(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "run"
    stop_after_saving(monkeypatch, 2)
    with pytest.raises(Stopped):
        train_tiny(out, TINY, progress=False)
    monkeypatch.undo()
    assert json.loads((out / "training.json").read_text())["step"] == 2
    assert sorted(p.name for p in (out / RESUME_FOLDER).iterdir()) == ["state.json", "trainer.pt"]
    code, stdout, _ = run_cli(capsys, "train-tiny", "--resume", str(out))
    assert code == 0 and "after 4 steps" in stdout
    assert_same_run(out, reference)
    assert not (out / RESUME_FOLDER).exists()  # the final checkpoint is just the model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left beside it


def test_three_sittings_one_cut_short_in_a_save_end_bit_identical(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sitting 1 dies while writing the save of step 2, which leaves step 1's checkpoint whole:
    resuming at an odd step, the second worker's Generator goes first and the accuracy window
    is half full. Sitting 2 stops after saving step 3, sitting 3 finishes. The log file (sitting 1 had logged step 2 before dying)
    ends as one whole log."""
    out, log_file = tmp_path / "run", tmp_path / "log.jsonl"
    write_resume_state = training.write_resume_state

    def die_at_step_2(run, checkpoint):
        if run.step != 2:
            return write_resume_state(run, checkpoint)
        (checkpoint / RESUME_FOLDER).mkdir()
        (checkpoint / RESUME_FOLDER / "trainer.pt").write_bytes(b"half")
        raise Stopped

    with monkeypatch.context() as patch:
        patch.setattr(training, "write_resume_state", die_at_step_2)
        with pytest.raises(Stopped):
            train_tiny(out, TINY, progress=False, log_file=log_file)
    assert json.loads((out / "training.json").read_text())["step"] == 1
    assert [json.loads(line)["step"] for line in log_file.read_text().splitlines()] == [2]
    with monkeypatch.context() as patch:
        stop_after_saving(patch, 3)
        with pytest.raises(Stopped):
            train_tiny(out, TINY, progress=False, log_file=log_file, resume=True)
    log = train_tiny(out, TINY, progress=False, log_file=log_file, resume=True)
    assert_same_run(out, reference)
    assert [json.loads(line) for line in log_file.read_text().splitlines()] == log


def test_the_long_recipe_stopped_and_resumed_ends_bit_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    reference = tmp_path / "reference"
    train_tiny(reference, LONG, progress=False)
    out = tmp_path / "run"
    stop_after_saving(monkeypatch, 1)
    with pytest.raises(Stopped):
        train_tiny(out, LONG, progress=False)
    monkeypatch.undo()
    saved = json.loads((out / "training.json").read_text())["train_config"]
    assert saved["world"] == "hard" and saved["stretch_share"] == 1.0
    code, _, err = run_cli(capsys, "train-tiny", "--resume", str(out), "--world", "classic")
    assert code == 2 and err.count("\n") == 1
    assert "--world classic differs from the hard the run in" in err
    with pytest.raises(OmniMemError, match="started with world='hard', not world='classic'"):
        train_tiny(out, replace(LONG, world="classic"), resume=True)
    with pytest.raises(OmniMemError, match="started with time_ramp=False, not time_ramp=True"):
        train_tiny(out, replace(LONG, time_ramp=True), resume=True)
    code, stdout, _ = run_cli(capsys, "train-tiny", "--resume", str(out))
    assert code == 0 and "after 4 steps" in stdout
    assert_same_run(out, reference)


def test_resume_refuses_a_folder_without_a_run(tmp_path: Path, capsys) -> None:
    for folder in (tmp_path / "missing", tmp_path):
        code, _, err = run_cli(capsys, "train-tiny", "--resume", str(folder))
        assert code == 2 and err.count("\n") == 1
        assert "holds no training run to resume" in err


def test_resume_refuses_a_finished_run(reference: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "train-tiny", "--resume", str(reference))
    assert code == 2 and err.count("\n") == 1
    assert "is complete (all 4 steps are done)" in err


def test_resume_refuses_options_that_differ_but_not_save_every(
    unfinished: Path, tmp_path: Path, capsys
) -> None:
    for option, value, saved in (("--steps", "5", "4"), ("--workers", "1", "2")):
        code, _, err = run_cli(capsys, "train-tiny", "--resume", str(unfinished), option, value)
        assert code == 2 and err.count("\n") == 1
        assert f"{option} {value} differs from the {saved} the run in" in err
    argv = ["train-tiny", "--resume", str(unfinished), "--save-every", "2", "--steps", "4"]
    resumed = resumed_config(cli.build_parser(argv).parse_args(argv))
    assert resumed == replace(TINY, checkpoint_every=2)
    out = tmp_path / "run"
    shutil.copytree(unfinished, out)
    with pytest.raises(OmniMemError, match="started with log_every=2, not log_every=1"):
        train_tiny(out, replace(TINY, log_every=1), resume=True)
    shutil.rmtree(out / RESUME_FOLDER)
    with pytest.raises(OmniMemError, match="holds the model at step 0 but no resume/ state"):
        train_tiny(out, TINY, resume=True)


def test_a_new_run_refuses_to_overwrite_an_unfinished_one(unfinished: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "train-tiny", "--out", str(unfinished), "--steps", "1")
    assert code == 2 and err.count("\n") == 1
    assert f"continue it with --resume {unfinished}" in err


def test_resume_recovers_a_swap_cut_between_its_renames(unfinished: Path, tmp_path: Path) -> None:
    """Killed after the old checkpoint stepped aside, before the new one took its name."""
    out = tmp_path / "run"
    shutil.copytree(unfinished, sibling(out, OLD_SUFFIX))
    assert training.saved_run(out).step == 0
    assert (out / RESUME_FOLDER).is_dir() and not sibling(out, OLD_SUFFIX).exists()
