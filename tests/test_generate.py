"""Generating a dataset: its files, its reproducibility, and its refusals (library and CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omnimem_ref import cli, dataset
from omnimem_ref.dataset import generate_dataset, load_dataset
from omnimem_ref.errors import OmniMemError
from omnimem_ref.world import Question, Scene

SMALL_SEED, SMALL_DURATION = 11, 24.0  # how conftest.py's small_dataset is made


def test_dataset_layout_and_contents(small_dataset: Path) -> None:
    names = sorted(p.name for p in small_dataset.iterdir())
    assert names == [
        "clip_0000.mp4",
        "clip_0000.wav",
        "clip_0001.mp4",
        "clip_0001.wav",
        "manifest.json",
        "questions.json",
        "scenes.json",
    ]
    questions, scenes, manifest = load_dataset(small_dataset)
    assert set(scenes) == {"clip_0000", "clip_0001"}
    assert {q.clip for q in questions} == set(scenes)
    assert all(scene.duration == SMALL_DURATION for scene in scenes.values())
    raw = json.loads((small_dataset / "questions.json").read_text())
    assert [Question.from_dict(d) for d in raw] == questions
    assert manifest["parameters"]["seed"] == SMALL_SEED
    assert manifest["command"].startswith("omnimem generate --out ")
    assert manifest["command"].endswith(
        f"--n 2 --seed {SMALL_SEED} --duration 24 --visual-events 4 --audio-events 3"
    )
    assert [c["name"] for c in manifest["clips"]] == ["clip_0000", "clip_0001"]
    assert sum(c["questions"] for c in manifest["clips"]) == len(questions)


def test_clip_i_depends_only_on_seed_and_i(small_scenes: dict) -> None:
    """Clip 0 of a 2-clip dataset is clip 0 of a 1-clip one: datasets can grow without changing."""
    scene, questions = dataset._sample_clip(SMALL_SEED, 0, SMALL_DURATION, 4, 3)
    assert scene == small_scenes["clip_0000"]
    assert all(q.clip == "clip_0000" for q in questions)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate_dataset(out, n=1, seed=3, duration=16, progress=False)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    generate_dataset(out, n=1, seed=3, duration=16, overwrite=True, progress=False)
    second = {p.name: p.read_bytes() for p in out.iterdir()}
    assert first.keys() == second.keys()
    for name in first:  # .mp4 included: x264 runs single-threaded
        assert first[name] == second[name], name
    generate_dataset(out, n=1, seed=4, duration=16, overwrite=True, progress=False)
    assert (out / "scenes.json").read_bytes() != first["scenes.json"]


def test_random_durations_are_in_range_and_rounded(tmp_path: Path) -> None:
    durations = [dataset._sample_clip(0, i, None, 4, 3)[0].duration for i in range(50)]
    assert all(30 <= d <= 60 and round(d, 1) == d for d in durations)
    assert len(set(durations)) > 40


# --- refusals, and nothing written when refused ---------------------------------------------------


def test_non_empty_out_dir_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OmniMemError, match="already exists and is not empty"):
        generate_dataset(out, n=1, seed=0, duration=16, progress=False)
    with pytest.raises(OmniMemError, match="will not delete it"):  # not a dataset: never deleted
        generate_dataset(out, n=1, seed=0, duration=16, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_empty_out_dir_is_used(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    generate_dataset(out, n=1, seed=0, duration=16, progress=False)
    assert (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no staging leftovers


def test_out_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ds").write_text("x")
    with pytest.raises(OmniMemError, match="is a file"):
        generate_dataset(tmp_path / "ds", n=1, seed=0, duration=16, progress=False)


def test_an_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        (Path(args[1])).write_bytes(b"clip")

    monkeypatch.setattr(dataset, "write_clip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "ds", n=3, seed=0, duration=16, progress=False)
    assert list(tmp_path.iterdir()) == []


def _run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["generate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--duration", "0"], "--duration"),
        (["--duration", "-5"], "--duration"),
        (["--duration", "nan"], "--duration"),
        (["--n", "0"], "--n"),
        (["--n", "-3"], "--n"),
        (["--visual-events", "0"], "--visual-events"),
        (["--visual-events", "-1"], "--visual-events"),
        (["--audio-events", "0"], "--audio-events"),
        (["--audio-events", "-2"], "--audio-events"),
        (["--duration", "16", "--visual-events", "6"], "--visual-events"),
    ],
)
def test_cli_refuses_impossible_parameters(tmp_path, monkeypatch, capsys, args, hint) -> None:
    base = {"--out": str(tmp_path / "ds"), "--n": "1", "--seed": "0"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [word for pair in base.items() for word in pair]
    code, out, err = _run_cli(monkeypatch, capsys, *argv)
    assert code == 2
    assert err.startswith("omnimem generate: error: ") and err.count("\n") == 1
    assert hint in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the directory


def test_cli_generates(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "ds"
    code, stdout, _ = _run_cli(
        monkeypatch, capsys, "--out", str(out), "--n", "1", "--seed", "2", "--duration", "16"
    )
    assert code == 0 and "wrote 1 clips" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == (
        f"omnimem generate --out {out} --n 1 --seed 2 --duration 16 "
        "--visual-events 4 --audio-events 3"
    )


@pytest.mark.slow  # a fresh interpreter: a few seconds
def test_real_command_line_exit_code_and_message(tmp_path) -> None:
    """The installed entry point, end to end: exit code 2, one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "omnimem_ref.cli", "generate", "--out", str(tmp_path / "ds")]
        + ["--n", "2", "--seed", "0", "--duration", "-1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- loading -----------------------------------------------------------------------------------


def test_load_dataset_errors(tmp_path: Path, small_dataset: Path) -> None:
    with pytest.raises(OmniMemError, match="There is no dataset directory"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(OmniMemError, match="has no questions.json"):
        load_dataset(tmp_path)
    (tmp_path / "questions.json").write_text('[{"clip": ')
    with pytest.raises(OmniMemError, match="is not valid JSON"):
        load_dataset(tmp_path)
    (tmp_path / "questions.json").write_text('[{"clip": "clip_0000"}]')
    with pytest.raises(OmniMemError, match="malformed question"):
        load_dataset(tmp_path)
    (tmp_path / "questions.json").write_text('{"not": "a list"}')
    with pytest.raises(OmniMemError, match="malformed question"):
        load_dataset(tmp_path)
    (tmp_path / "questions.json").write_bytes((small_dataset / "questions.json").read_bytes())
    (tmp_path / "scenes.json").write_text("[1, 2]")
    with pytest.raises(OmniMemError, match="malformed scene"):
        load_dataset(tmp_path)


def test_load_dataset_needs_only_questions(tmp_path: Path, small_dataset: Path) -> None:
    (tmp_path / "questions.json").write_bytes((small_dataset / "questions.json").read_bytes())
    questions, scenes, manifest = load_dataset(tmp_path)
    assert len(questions) > 0 and scenes == {} and manifest == {}
    assert isinstance(load_dataset(small_dataset)[1]["clip_0000"], Scene)


def test_bundled_samples_match_the_generator() -> None:
    """data_samples/tiny must be what its manifest's command makes today; if the world changed,
    regenerate it with the command in data_samples/README.md (add --overwrite)."""
    root = Path(__file__).resolve().parents[1] / "data_samples" / "tiny"
    questions, scenes, manifest = load_dataset(root)
    p = manifest["parameters"]
    assert manifest["generator_version"] == dataset.GENERATOR_VERSION
    for i, clip in enumerate(manifest["clips"]):
        scene, clip_questions = dataset._sample_clip(
            p["seed"], i, p["duration"], p["n_visual"], p["n_audio"]
        )
        assert scenes[clip["name"]] == scene, "stale data_samples: regenerate them"
        assert [q for q in questions if q.clip == clip["name"]] == clip_questions
        assert (root / clip["video"]).is_file() and (root / clip["audio"]).is_file()
