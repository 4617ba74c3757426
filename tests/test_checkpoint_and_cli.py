"""Checkpoints save and load exactly; model-facing commands refuse bad input in one sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from omnimem_ref import cli
from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.training.train_tiny import save_checkpoint
from tests.cli_runner import run_cli
from tests.model_fixtures import tiny_model, tiny_stream


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(tiny_model(), out, {"note": "test"})
    return out


def test_checkpoint_round_trip_gives_identical_answers(checkpoint: Path) -> None:
    stream = tiny_stream()
    answers = []
    for model, tokenizer in [(tiny_model(), build_tokenizer()), load_model(checkpoint)]:
        session = StreamingSession(model, tokenizer)
        session.stream(stream)
        answer = session.answer("what shape was the red object ?", ("circle", "square"))
        answers.append(torch.tensor(list(answer.probabilities.values())))
    assert torch.equal(answers[0], answers[1])


def test_missing_or_corrupt_checkpoint_is_one_sentence(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(OmniMemError, match="No checkpoint folder"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(OmniMemError, match="missing config.json, model.safetensors"):
        load_model(tmp_path)  # an empty folder
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(OmniMemError, match="corrupt"):
        load_model(broken)
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(OmniMemError, match="not TinyOmni"):
        load_model(other)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "bogus"], "Unknown policy 'bogus'; choose one of: full, recent"),
        (["--budget", "0"], "Budget '0' is not valid"),
        (["--budget", "1.5"], "Budget '1.5' is not valid"),
        (["--budget", "-0.1"], "Budget '-0.1' is not valid"),
        (["--budget", "3", "--policy", "recent"], "cannot even hold the 9-token prompt prefix"),
        (["--clip", "missing.mp4"], "missing.mp4"),
    ],
)
def test_demo_bad_input(capsys, checkpoint: Path, tmp_path: Path, argv, message) -> None:
    code, _, err = run_cli(
        capsys, "demo", "--checkpoint", str(checkpoint), "--out", str(tmp_path), *argv
    )
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.png")), "no output written for a failed run"


def test_eval_missing_checkpoint(capsys, tmp_path: Path, small_dataset: Path) -> None:
    argv = ["eval", "--data", str(small_dataset), "--checkpoint", str(tmp_path / "none")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "No checkpoint folder" in err


@pytest.mark.slow
def test_eval_json_and_budget_larger_than_stream(capsys, checkpoint, small_dataset) -> None:
    argv = ["eval", "--data", str(small_dataset), "--checkpoint", str(checkpoint)]
    code, out, _ = run_cli(capsys, *argv, "--policy", "recent", "--budget", "100000", "--json")
    result = json.loads(out)
    assert code == 0
    assert {
        "policy",
        "budget",
        "n",
        "accuracy",
        "by_family",
        "peak_kv_tokens",
        "peak_kv_bytes",
    } <= set(result)
    assert result["budget_exceeds_stream"] == 2 and result["n"] == 8
    full_code, full_out, _ = run_cli(capsys, *argv, "--json")
    assert full_code == 0 and json.loads(full_out)["accuracy"] == result["accuracy"]


def test_demo_warns_on_clip_longer_than_trained(
    capsys, checkpoint, small_dataset, tmp_path
) -> None:
    short = tmp_path / "short"
    shutil.copytree(checkpoint, short)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_seconds": 10.0}))
    argv = ["demo", "--checkpoint", str(short), "--clip", str(small_dataset / "clip_0000.mp4")]
    with pytest.warns(UserWarning, match="trained on clips up to 10 s"):
        code, out, _ = run_cli(capsys, *argv, "--out", str(tmp_path))
    assert code == 0 and "correct" in out
    assert list(tmp_path.glob("*.png"))


def test_demo_without_bundled_samples_generates_them_once(capsys, monkeypatch, tmp_path):
    """Installed from a wheel there is no data_samples/ beside the package: `omnimem demo` with no
    arguments generates the four sample clips once (the bundled recipe) and answers them."""
    from omnimem_ref import dataset

    monkeypatch.setattr(dataset, "SAMPLES_DIR", tmp_path / "not-installed")
    monkeypatch.setenv("OMNIMEM_CACHE", str(tmp_path / "cache"))
    assert cli.main(["demo", "--out", str(tmp_path / "out")]) in (0, None)
    out = capsys.readouterr()
    samples = tmp_path / "cache" / "samples" / "tiny"
    assert "generating them once" in out.err
    assert sorted(p.name for p in samples.glob("*.mp4")) == [f"clip_000{i}.mp4" for i in range(4)]
    assert "clip_0000.mp4: 36 s" in out.out and "correct" in out.out
    assert (tmp_path / "out" / "clip_0000_omnimem_memory.png").is_file()
    assert cli.main(["demo", "--out", str(tmp_path / "out")]) in (0, None)  # reuses them
    assert "generating" not in capsys.readouterr().err
