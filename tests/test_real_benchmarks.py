"""Published benchmarks (Video-MME, LVBench, LVOmniBench): readers, the resumable harness, and
bad records refused in one sentence, on clips written by ``omnimem generate --format``.

The model is a tiny random Qwen2.5-Omni thinker saved to a folder (built by
``omnimem_ref.model.qwen_omni.tiny``, as in ``tests/test_qwen_omni.py``; nothing is downloaded) or, where an accuracy must mean something,
the shipped TinyOmni: the generated questions are in its vocabulary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from omnimem_ref import cli
from omnimem_ref.dataset import load_dataset
from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.qwen_omni.tiny import tiny_thinker, tiny_tokenizer
from omnimem_ref.real_benchmarks import FORMATS, read_benchmark
from omnimem_ref.real_benchmarks.lvbench import split_options
from omnimem_ref.real_benchmarks.lvomnibench import read_lvomnibench
from tests.cli_runner import run_cli

FILES = {name: form.file_name for name, form in FORMATS.items()}
FAMILIES = {"visual", "audio", "binding", "temporal"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """Two 16-second clips with their questions in each format, written by the command line."""
    root = tmp_path_factory.mktemp("generated")
    for name in FORMATS:
        argv = ["generate", "--out", str(root / name), "--n", "2", "--seed", "5"]
        assert cli.main([*argv, "--duration", "16", "--format", name]) == 0
    return {name: root / name for name in FORMATS}


@pytest.fixture(scope="module")
def thinker_folder(tmp_path_factory) -> Path:
    """A tiny random thinker and its tokenizer as save_pretrained writes them; frames are read at
    56 x 56 pixels (4 video tokens per frame pair)."""
    folder = tmp_path_factory.mktemp("thinker")
    tokenizer = tiny_tokenizer()
    tiny_thinker(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "video_preprocessor_config.json").write_text(
        '{"min_pixels": 3136, "max_pixels": 3136}'
    )
    return folder


def bench(name: str, folder: Path, *extra: str) -> list[str]:
    """``omnimem bench --benchmark name`` arguments on generated clips."""
    annotations = str(folder / FILES[name])
    return ["bench", "--benchmark", name, "--annotations", annotations, "--videos", str(folder),
            "--quiet", *extra]  # fmt: skip


def answers(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()[1:]]


# --- readers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_reader_reads_back_what_generate_writes(generated, name):
    folder = generated[name]
    truth, _, _ = load_dataset(folder)
    questions = read_benchmark(name, folder / FILES[name], folder)
    assert len(questions) == len(truth) == 8
    for q, world in zip(questions, truth, strict=True):
        assert q.video == folder / f"{world.clip}.mp4" and q.video.is_file()
        assert q.question == world.question
        assert "".join(q.options) == "ABCD"[: len(world.options)]  # temporal questions have two
        assert list(q.options.values()) == list(world.options)
        assert q.options[q.answer] == world.answer
        assert q.task_types == (world.family,)
    if name == "videomme":  # the breakdowns a summary reports
        assert questions[0].details == {"duration": "short", "domain": "synthetic"}


def test_videomme_duration_filter(generated):
    folder = generated["videomme"]
    annotations = folder / FILES["videomme"]
    assert len(read_benchmark("videomme", annotations, folder, "short")) == 8  # 16-s clips
    with pytest.raises(OmniMemError, match="holds no long Video-MME question"):
        read_benchmark("videomme", annotations, folder, "long")
    with pytest.raises(OmniMemError, match="--duration is Video-MME's filter"):
        read_benchmark("lvbench", annotations, folder, "long")


def test_lvbench_options_inline_or_on_their_own_lines():
    assert split_options("Who (if anyone) spoke?\n(A) Ann\n(B) Bo (the cook)\n(C) nobody", "q") == (
        "Who (if anyone) spoke?",
        {"A": "Ann", "B": "Bo (the cook)", "C": "nobody"},
    )
    assert split_options("Which? (A) red (B) blue", "q") == ("Which?", {"A": "red", "B": "blue"})
    with pytest.raises(OmniMemError, match="lettered A"):
        split_options("Which one? (A) only one", "q")


@pytest.mark.parametrize(
    ("options", "correct"),
    [
        (["A. red", "B. blue"], "B"),
        (["red", "blue"], "blue"),
        ({"A": "red", "B": "blue"}, "(B)"),
    ],
)
def test_lvomnibench_accepts_the_common_option_shapes(tmp_path, options, correct):
    record = {"video_id": "v", "question": "Which?", "options": options,
              "correct_option": correct, "question_type": "t", "audio_type": "speech",
              "difficulty": "hard", "video_category": "news"}  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps([record]))
    (q,) = read_lvomnibench(tmp_path / "data.json", tmp_path)
    assert q.options == {"A": "red", "B": "blue"} and q.answer == "B" and q.id == "v-1"
    assert q.details == {"audio_type": "speech", "difficulty": "hard", "video_category": "news"}


# --- bad records -------------------------------------------------------------------------------


def _edit_videomme(path: Path, edit) -> None:
    table = pd.read_parquet(path)
    edit(table)
    table.to_parquet(path, index=False)


def _edit_json_lines(path: Path, edit) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    edit(lines)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _edit_json(path: Path, edit) -> None:
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))


BAD_RECORDS = [
    ("videomme", lambda t: t.drop(columns="task_type", inplace=True),
     "Video-MME question clip_0000-1 has no 'task_type' field"),
    ("videomme", lambda t: t.loc.__setitem__((1, "answer"), "E"),
     "Video-MME question clip_0000-2 answers 'E', which is not among its options (A, B, C, D)"),
    ("lvbench", lambda lines: lines[0]["qa"][0].pop("answer"),
     "LVBench question clip_0000-1 has no 'answer' field"),
    ("lvbench", lambda lines: lines[1]["qa"][2].update(answer="F"),
     "LVBench question clip_0001-3 answers 'F', which is not among its options"),
    ("lvomnibench", lambda records: records[2].pop("question_type"),
     "LVOmniBench record 3 (video clip_0000) has no 'question_type' field"),
    ("lvomnibench", lambda records: records[4].update(correct_option="Z"),
     "LVOmniBench record 5 (video clip_0001) answers 'Z', which is not among its options"),
]  # fmt: skip
EDITORS = {"videomme": _edit_videomme, "lvbench": _edit_json_lines, "lvomnibench": _edit_json}


@pytest.mark.parametrize(("name", "edit", "message"), BAD_RECORDS)
def test_a_bad_record_stops_the_run_in_one_sentence(
    capsys, tmp_path, generated, name, edit, message
):
    annotations = tmp_path / FILES[name]
    shutil.copy(generated[name] / FILES[name], annotations)
    EDITORS[name](annotations, edit)
    argv = bench(name, generated[name], "--budgets", "0.2", "--json", str(tmp_path / "s.json"))
    argv[argv.index("--annotations") + 1] = str(annotations)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "s.answers.jsonl").exists()


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_missing_video_is_named_before_anything_streams(capsys, tmp_path, generated, name):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(generated[name] / "clip_0000.mp4", videos)
    argv = bench(name, generated[name], "--budgets", "0.2", "--json", str(tmp_path / "s.json"))
    argv[argv.index("--videos") + 1] = str(videos)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert f"needs the video {videos / 'clip_0001.mp4'}, which does not exist" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--budgets", "0.1"], "Give --data (generated clips) or --benchmark"),
        (["bench", "--data", "d", "--budgets", "0.1", "--model", "m"],
         "--model applies to --benchmark runs"),
        (["bench", "--benchmark", "lvbench", "--budgets", "0.1"],
         "--benchmark needs --annotations FILE and --videos DIR"),
        (["bench", "--benchmark", "lvbench", "--annotations", "a", "--videos", "v",
          "--budgets", "0.1", "--shard", "2/2"], "--shard '2/2' is not valid"),
    ],
)  # fmt: skip
def test_misplaced_options_are_refused_in_one_sentence(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1


# --- the harness -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_bench_streams_a_saved_thinker_end_to_end(
    capsys, tmp_path, generated, thinker_folder, name
):
    summary_path = tmp_path / "summary.json"
    argv = bench(name, generated[name], "--model", str(thinker_folder), "--limit", "5",
                 "--policies", "full,omnimem", "--budgets", "0.3",
                 "--json", str(summary_path))  # fmt: skip
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    summary = json.loads(summary_path.read_text())
    assert summary["benchmark"] == name and summary["questions"] == 5
    records = {(r["policy"], r["budget"]): r for r in summary["records"]}
    assert set(records) == {("full", None), ("omnimem", "0.3")}
    for r in records.values():
        assert r["n"] == 5 and r["missing"] == 0 and r["videos"] == 2
        assert 0 <= r["accuracy"] <= 1
        assert set(r["by_task_type"]) <= FAMILIES
        assert sum(r["n_by_task_type"].values()) == 5
    full, omnimem = records["full", None], records["omnimem", "0.3"]
    assert omnimem["peak_kv_tokens"] < full["peak_kv_tokens"]  # the budget bound memory
    assert round(0.3 * full["budget_tokens_mean"]) == pytest.approx(
        omnimem["budget_tokens_mean"], abs=1
    )
    log = answers(tmp_path / "summary.answers.jsonl")
    assert len(log) == 10 and all(line["prediction"] in "ABCD" for line in log)
    assert "10 answers added; 0 were already in" in out


def test_trained_tinyomni_answers_through_the_harness(capsys, tmp_path, generated):
    """Letters must map back to the benchmark's letters: the shipped TinyOmni, which answers these
    questions with full memory, must keep doing so through LVBench's inline options."""
    summary_path = tmp_path / "summary.json"
    argv = bench("lvbench", generated["lvbench"], "--policies", "full", "--budgets", "0.1",
                 "--json", str(summary_path))  # fmt: skip
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    (full,) = json.loads(summary_path.read_text())["records"]
    assert full["n"] == 8 and full["accuracy"] >= 0.75  # chance: 2.5 of 8
    log = answers(tmp_path / "summary.answers.jsonl")
    assert all(line["time_reference"] for line in log)  # LVBench's evidence times are kept


def test_an_interrupted_run_resumes_without_recomputing_or_losing_answers(
    capsys, tmp_path, generated, thinker_folder
):
    summary_path, log_path = tmp_path / "s.json", tmp_path / "s.answers.jsonl"
    argv = bench("videomme", generated["videomme"], "--model", str(thinker_folder),
                 "--policies", "full,recent", "--budgets", "0.2",
                 "--json", str(summary_path))  # fmt: skip
    code, _, err = run_cli(capsys, *argv, "--limit", "3")  # the run that gets "killed"
    assert code == 0, err
    finished = log_path.read_bytes()
    assert len(answers(log_path)) == 6
    with log_path.open("ab") as file:  # killed while writing its next answer
        file.write(b'{"question": "clip_0000-4", "policy": "full", "bud')

    code, _, err = run_cli(capsys, *argv)  # the log exists: resuming must be asked for
    assert code == 2 and f"pass --resume {log_path}" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, *argv, "--resume", str(log_path), "--steps-per-chunk", "2")
    assert code == 2 and "was written with steps_per_chunk 1, not 2" in err

    code, out, err = run_cli(capsys, *argv, "--resume", str(log_path))
    assert code == 0, err
    assert "dropped a half-written last line" in out
    assert "10 answers added; 6 were already in" in out
    assert log_path.read_bytes().startswith(finished)  # nothing lost, nothing rewritten
    keys = [(a["question"], a["policy"], a["budget"]) for a in answers(log_path)]
    assert len(keys) == len(set(keys)) == 16  # 8 questions x (full, recent @ 0.2), once each
    summary = json.loads(summary_path.read_text())
    assert [r["n"] for r in summary["records"]] == [8, 8]

    code, out, _ = run_cli(capsys, *argv, "--resume", str(log_path))
    assert code == 0 and "0 answers added; 16 were already in" in out


def test_a_killed_process_loses_no_logged_answer(capsys, tmp_path, generated, thinker_folder):
    """A real interruption: the command line in its own process, killed (SIGKILL, no cleanup)
    as soon as its first answers are logged; resuming keeps them and completes the run."""
    summary_path, log_path = tmp_path / "s.json", tmp_path / "s.answers.jsonl"
    argv = bench("lvbench", generated["lvbench"], "--model", str(thinker_folder),
                 "--policies", "full,recent,vnorm,omnimem", "--budgets", "0.1,0.2,0.3",
                 "--json", str(summary_path))  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "omnimem_ref.cli", *argv], env=env)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if log_path.is_file() and log_path.read_text().count("\n") >= 3:  # header + 2 answers
            process.kill()
            break
        time.sleep(0.01)
    assert process.wait() == -9, "the run ended before it could be killed"
    logged = log_path.read_bytes()
    kept = len(logged.splitlines()) - 1 - (not logged.endswith(b"\n"))
    assert kept >= 2

    code, out, err = run_cli(capsys, *argv, "--resume", str(log_path))
    assert code == 0, err
    whole = logged[: logged.rfind(b"\n") + 1]
    assert log_path.read_bytes().startswith(whole)  # every whole line is still there, unchanged
    keys = {(a["question"], a["policy"], a["budget"]) for a in answers(log_path)}
    assert len(answers(log_path)) == len(keys) == 8 * 10  # full, and 3 policies x 3 budgets
    assert f"{80 - kept} answers added; {kept} were already in" in out


def test_two_shards_merge_into_the_answers_of_one_run(capsys, tmp_path, generated, thinker_folder):
    argv = bench("lvomnibench", generated["lvomnibench"], "--model", str(thinker_folder),
                 "--policies", "omnimem", "--budgets", "0.2")  # fmt: skip
    for shard in ("0/2", "1/2"):
        out = str(tmp_path / f"shard{shard[0]}.json")
        assert run_cli(capsys, *argv, "--shard", shard, "--json", out)[0] == 0
    logs = [str(tmp_path / f"shard{i}.answers.jsonl") for i in (0, 1)]
    assert {a["video"] for a in answers(Path(logs[0]))} == {"clip_0000.mp4"}
    code, _, err = run_cli(capsys, *argv, "--merge", *logs, "--json", str(tmp_path / "all.json"))
    assert code == 0, err
    (record,) = json.loads((tmp_path / "all.json").read_text())["records"]
    assert record["n"] == 8 and record["missing"] == 0 and record["videos"] == 2

    assert run_cli(capsys, *argv, "--json", str(tmp_path / "one.json"))[0] == 0
    one = {a["question"]: a["prediction"] for a in answers(tmp_path / "one.answers.jsonl")}
    merged = {a["question"]: a["prediction"] for log in logs for a in answers(Path(log))}
    assert merged == one
