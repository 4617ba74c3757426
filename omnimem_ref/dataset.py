"""A synthetic dataset on disk: clips, their questions, the ground truth, and how it was made.

``generate_dataset`` writes clips of one world (:mod:`omnimem_ref.world.presets`: ``classic``, the
default, or ``hard``, with any knob overridden) into one directory::

    clip_0000.mp4, clip_0000.wav, ...   the clips (see :mod:`omnimem_ref.clipfiles`)
    questions.json                       every question, one dict per question
    scenes.json                          clip name -> the scene it was rendered from (ground truth)
    manifest.json                        generator version, every parameter, the exact command

Reproducibility: clip ``i`` draws everything from ``np.random.default_rng([seed, i])``, so a
clip does not depend on how many clips come before it, and the same seed and parameters give
byte-identical JSON and ``.wav`` files (and ``.mp4`` files too, with the same PyAV/FFmpeg build).

Safety: every parameter is checked and every scene sampled before anything is written; the files
are written into a hidden sibling directory that is renamed into place at the end, so an
interrupted run leaves no half-written dataset behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm import tqdm

from omnimem_ref import __version__
from omnimem_ref.clipfiles import VIDEO_CODEC_OPTIONS, write_clip
from omnimem_ref.errors import OmniMemError
from omnimem_ref.world import CLASSIC, Question, Scene, World, sample_world_scene, world_questions
from omnimem_ref.world.presets import world_flags
from omnimem_ref.world.sampling import check_parameters

GENERATOR_VERSION = 1  # bump whenever the same parameters would give different clips
# The four bundled sample clips (in a source checkout or an editable install).
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "data_samples" / "tiny"
# How they were made (data_samples/README.md): regenerated from this recipe where they are absent.
SAMPLES_RECIPE: dict[str, Any] = {"n": 4, "seed": 7, "duration": 36.0}
DURATION_RANGE = CLASSIC.duration_range  # seconds, when no duration is given (classic world)
FPS = 8
FRAME_SIZE = 128
SAMPLE_RATE = 16000


def sample_clips_dir() -> Path:
    """The folder of the four sample clips.

    In a source checkout (or an editable install) they are the bundled ``data_samples/tiny``.
    A plain ``pip install`` of the package has no ``data_samples/`` beside it, so the first call
    generates the same four clips from :data:`SAMPLES_RECIPE` into a cache folder
    (``$OMNIMEM_CACHE``, default ``~/.cache/omnimem-ref``), a few seconds, and later calls reuse
    them. Generation writes into a hidden folder renamed into place, so an interrupted first run
    leaves nothing half-written.
    """
    if (SAMPLES_DIR / "questions.json").is_file():
        return SAMPLES_DIR
    cache = Path(os.environ.get("OMNIMEM_CACHE", Path.home() / ".cache" / "omnimem-ref"))
    samples = cache / "samples" / "tiny"
    if not (samples / "questions.json").is_file():
        print(f"(no bundled samples here: generating them once into {samples})", file=sys.stderr)
        generate_dataset(samples, progress=False, overwrite=samples.is_dir(), **SAMPLES_RECIPE)
    return samples


def clip_name(i: int) -> str:
    return f"clip_{i:04d}"


def generate_dataset(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    duration: float | None = None,
    n_visual: int | None = None,
    n_audio: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    world: World = CLASSIC,
) -> dict[str, Any]:
    """Write ``n`` clips of ``world`` with their questions into ``out_dir``; return the manifest.

    ``n_visual`` and ``n_audio`` default to the world's own (4 and 3 in the classic world).
    """
    out = Path(out_dir).resolve()  # "." or "data/" have a usable name and parent once resolved
    duration = None if duration is None else float(duration)
    n_visual = world.visual_events if n_visual is None else n_visual
    n_audio = world.audio_events if n_audio is None else n_audio
    _check_parameters(n, duration, n_visual, n_audio, world)
    _check_destination(out, overwrite)
    scenes = [_sample_clip(seed, i, duration, n_visual, n_audio, world) for i in range(n)]
    manifest = _manifest(out_dir, n, seed, duration, n_visual, n_audio, scenes, world)
    questions = [q.to_dict() for _, qs in scenes for q in qs]
    ground_truth = {clip_name(i): scene.to_dict() for i, (scene, _) in enumerate(scenes)}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(out, "partial")
    try:
        _write_clips(staging, [scene for scene, _ in scenes], progress)
        _write_json(staging / "questions.json", questions)
        _write_json(staging / "scenes.json", ground_truth)
        _write_json(staging / "manifest.json", manifest)
        _move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_clips(directory: Path, scenes: list[Scene], progress: bool) -> None:
    bar = tqdm(scenes, desc="generate", unit="clip", disable=not progress)
    for i, scene in enumerate(bar):
        mp4, wav = directory / f"{clip_name(i)}.mp4", directory / f"{clip_name(i)}.wav"
        write_clip(scene, mp4, wav, fps=FPS, size=FRAME_SIZE, sample_rate=SAMPLE_RATE)


def _check_parameters(
    n: int, duration: float | None, n_visual: int, n_audio: int, world: World
) -> None:
    if n < 1:
        raise OmniMemError(f"--n must be at least 1 clip, got {n}.")
    # With random durations the shortest possible clip is the hardest one to fill.
    shortest = world.duration_range[0] if duration is None else duration
    check_parameters(shortest, n_visual, n_audio, world)


def _check_destination(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OmniMemError(f"{out} is a file, not a directory; choose another --out.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise OmniMemError(
            f"{out} already exists and is not empty; pass --overwrite or another --out."
        )
    if not (out / "manifest.json").is_file():
        raise OmniMemError(
            f"{out} is not a dataset made by `omnimem generate` (it has no manifest.json), so "
            "--overwrite will not delete it; remove it yourself or choose another --out."
        )


def _sample_clip(
    seed: int,
    i: int,
    duration: float | None,
    n_visual: int,
    n_audio: int,
    world: World = CLASSIC,
) -> tuple[Scene, list[Question]]:
    """Clip ``i``'s scene and questions, from its own random stream."""
    rng = np.random.default_rng([seed, i])
    length = (
        duration if duration is not None else round(float(rng.uniform(*world.duration_range)), 1)
    )
    scene = sample_world_scene(rng, length, n_visual, n_audio, world)
    return scene, world_questions(scene, clip_name(i), rng, world)


def generate_command(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    duration: float | None,
    n_visual: int,
    n_audio: int,
    world: World = CLASSIC,
) -> str:
    """The command line that reproduces a dataset, with every parameter spelled out (a classic
    dataset's command names no world, as before worlds existed)."""
    words = ["omnimem", "generate", "--out", os.fspath(out_dir), "--n", str(n), "--seed", str(seed)]
    if duration is not None:
        words += ["--duration", f"{duration:g}"]
    words += ["--visual-events", str(n_visual), "--audio-events", str(n_audio)]
    return shlex.join(words + world_flags(world))


def _manifest(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    duration: float | None,
    n_visual: int,
    n_audio: int,
    scenes: list[tuple[Scene, list[Question]]],
    world: World,
) -> dict[str, Any]:
    return {
        "generator": "omnimem-ref",
        "generator_version": GENERATOR_VERSION,
        "package_version": __version__,
        "command": generate_command(out_dir, n, seed, duration, n_visual, n_audio, world),
        "parameters": {
            "n": n,
            "seed": seed,
            "duration": duration,
            "duration_range": None if duration is not None else list(world.duration_range),
            "n_visual": n_visual,
            "n_audio": n_audio,
            "fps": FPS,
            "frame_size": FRAME_SIZE,
            "sample_rate": SAMPLE_RATE,
            **_world_parameters(world),
        },
        "encoding": {
            "video": {"codec": "libx264", "pix_fmt": "yuv420p", **VIDEO_CODEC_OPTIONS},
            "audio": {"mp4": "aac", "wav": "PCM_16"},
            "pyav": av.__version__,
            "ffmpeg": getattr(av, "ffmpeg_version_info", "unknown"),
        },
        "clips": [
            {
                "name": clip_name(i),
                "video": f"{clip_name(i)}.mp4",
                "audio": f"{clip_name(i)}.wav",
                "duration": scene.duration,
                "questions": len(questions),
            }
            for i, (scene, questions) in enumerate(scenes)
        ],
    }


def _world_parameters(world: World) -> dict[str, Any]:
    """The world's knobs for the manifest; nothing for the plain classic world (whose manifest
    stays as it was before worlds existed)."""
    if not world_flags(world):
        return {}
    return {"world": {"preset": world.preset, **world.scene_knobs()}}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _sibling(out: Path, kind: str) -> Path:
    """A new hidden directory next to ``out`` (same filesystem, so renames are atomic)."""
    path = out.parent / f".{out.name}.{kind}-{secrets.token_hex(4)}"
    path.mkdir()  # unlike tempfile.mkdtemp, honours the umask: the dataset keeps normal permissions
    return path


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished staging directory to ``out``, replacing what was there last."""
    if out.is_dir():
        old = _sibling(out, "old")
        os.replace(out, old / out.name)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def load_dataset(
    directory: str | os.PathLike[str],
) -> tuple[list[Question], dict[str, Scene], dict[str, Any]]:
    """Questions, ground-truth scenes and manifest of a dataset directory.

    Only ``questions.json`` is required: a question set written by hand for real videos has no
    scenes and no manifest, and gets empty dicts for them.
    """
    root = Path(directory)
    if not root.is_dir():
        raise OmniMemError(
            f"There is no dataset directory at {root}; make one with `omnimem generate --out {root}`."
        )
    if not (root / "questions.json").is_file():
        raise OmniMemError(
            f"{root} has no questions.json; point to a directory made by `omnimem generate`."
        )
    raw_questions = _read_json(root / "questions.json")
    try:
        questions = [Question.from_dict(d) for d in raw_questions]
    except (KeyError, TypeError, ValueError) as error:
        raise OmniMemError(
            f"{root / 'questions.json'} holds a malformed question (missing or wrong {error}); "
            "regenerate it with `omnimem generate`."
        ) from None
    scenes: dict[str, Scene] = {}
    if (root / "scenes.json").is_file():
        try:
            scenes = {k: Scene.from_dict(v) for k, v in _read_json(root / "scenes.json").items()}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise OmniMemError(
                f"{root / 'scenes.json'} holds a malformed scene ({error}); regenerate the dataset."
            ) from None
    manifest = _read_json(root / "manifest.json") if (root / "manifest.json").is_file() else {}
    return questions, scenes, manifest


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OmniMemError(
            f"{path} is not valid JSON ({error}); regenerate it with `omnimem generate`."
        ) from None
