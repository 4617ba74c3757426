"""Generating a dataset: its files, its reproducibility, and its refusals (library and CLI)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from omnimem_ref import cli, dataset
from omnimem_ref.dataset import generate_dataset, load_dataset
from omnimem_ref.errors import OmniMemError
from omnimem_ref.world import HARD, Question, Scene

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


# --- worlds: classic unchanged, hard reproducible, knobs refused in one sentence ---------------


def test_classic_world_reproduces_the_bundled_samples_byte_for_byte(tmp_path: Path) -> None:
    """The samples were written before worlds existed: the classic world must still make them,
    every JSON and .wav byte (and the .mp4 too, with the PyAV/FFmpeg build that wrote them)."""
    import av

    root = Path(__file__).resolve().parents[1] / "data_samples" / "tiny"
    out = tmp_path / "tiny"
    generate_dataset(out, progress=False, **dataset.SAMPLES_RECIPE)
    bundled = json.loads((root / "manifest.json").read_text())
    same_codec = bundled["encoding"]["pyav"] == av.__version__
    for path in sorted(root.iterdir()):
        if path.name == "manifest.json" or (path.suffix == ".mp4" and not same_codec):
            continue
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    made = json.loads((out / "manifest.json").read_text())
    made["command"] = made["command"].replace(str(out), "data_samples/tiny")
    assert made == bundled


def _flags(manifest: dict) -> list[str]:
    """The manifest's command as ``omnimem`` arguments, without --out."""
    words = shlex.split(manifest["command"])[1:]
    i = words.index("--out")
    return words[:i] + words[i + 2 :]


def test_a_hard_dataset_is_reproduced_by_its_manifest_command(tmp_path, monkeypatch, capsys):
    argv = ["--n", "1", "--seed", "3", "--duration", "60", "--world", "hard"]
    argv += ["--motion", "1", "--families", "visual,counting,when", "--visual-events", "6"]
    code, _, err = _run_cli(monkeypatch, capsys, "--out", str(tmp_path / "a"), *argv)
    assert code == 0, err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["command"].endswith(
        "--duration 60 --visual-events 6 --audio-events 8 --world hard --motion 1 "
        "--families visual,counting,when"
    )
    assert manifest["parameters"]["world"]["preset"] == "hard"
    assert manifest["parameters"]["world"]["motion"] == 1.0
    questions, scenes, _ = load_dataset(tmp_path / "a")
    assert {q.family for q in questions} <= {"visual", "counting", "when"}
    assert scenes["clip_0000"].distractors and scenes["clip_0000"].pan != (0.0, 0.0)
    again = ["generate", "--out", str(tmp_path / "b"), *_flags(manifest)[1:]]
    assert cli.main(again) == 0
    for name in ("questions.json", "scenes.json", "clip_0000.wav", "clip_0000.mp4"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--world", "hard", "--object-size", "0.1"], "--object-size"),
        (["--world", "hard", "--object-size", "2-1"], "--object-size"),
        (["--world", "hard", "--object-size", "big"], "--object-size"),
        (["--world", "hard", "--motion", "3.5"], "--motion"),
        (["--world", "hard", "--shapes-per-colour", "5"], "--shapes-per-colour"),
        (["--world", "hard", "--object-repeats", "0"], "--object-repeats"),
        (["--world", "hard", "--tone-repeats", "17"], "--tone-repeats"),
        (["--world", "hard", "--tone-seconds", "0.2-1"], "--tone-seconds"),
        (["--world", "hard", "--distractors", "-1"], "--distractors"),
        (["--world", "hard", "--pan", "100"], "--pan"),
        (["--world", "hard", "--lighting", "2"], "--lighting"),
        (["--world", "hard", "--families", "visual,colour"], "--families"),
        (["--world", "hard", "--visual-events", "65"], "--visual-events"),
        (["--world", "hard", "--audio-events", "13"], "--tone-repeats"),
        (["--world", "hard", "--duration", "3601"], "--duration"),
        (
            ["--world", "hard", "--duration", "20", "--visual-events", "2", "--audio-events", "12"],
            "--audio-events",
        ),
        (["--motion", "1", "--families", "counting"], "--tone-repeats"),
    ],
)
def test_cli_refuses_bad_world_knobs(tmp_path, monkeypatch, capsys, args, hint) -> None:
    argv = ["--out", str(tmp_path / "ds"), "--n", "1", "--seed", "0", *args]
    code, _, err = _run_cli(monkeypatch, capsys, *argv)
    assert code == 2
    assert err.startswith("omnimem generate: error: ") and err.count("\n") == 1
    assert hint in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # about 30 s on one core
def test_a_ten_minute_hard_clip_generates(tmp_path: Path) -> None:
    import av

    out = tmp_path / "long"
    world = HARD.overridden(object_repeats=6, tone_repeats=16)
    generate_dataset(
        out, n=1, seed=0, duration=600, n_visual=64, n_audio=64, world=world, progress=False
    )
    questions, scenes, manifest = load_dataset(out)
    assert len(scenes["clip_0000"].visual) == len(scenes["clip_0000"].audio) == 64
    assert questions and manifest["parameters"]["duration"] == 600
    assert (out / "clip_0000.wav").stat().st_size == 44 + 600 * 16000 * 2
    with av.open(str(out / "clip_0000.mp4")) as container:
        assert container.streams.video[0].frames == 600 * dataset.FPS
