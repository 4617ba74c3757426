"""Peak memory of ``omnimem eval`` on a short and a long clip: it must not grow with the clip.

    python scripts/eval_memory.py                      # 5- and 60-minute clips, budget 2048
    python scripts/eval_memory.py --minutes 5 60 --work /tmp/eval-memory --json out.json

Each clip is evaluated by ``omnimem eval --policy omnimem --budget 2048 --json`` in a fresh
subprocess; its peak resident memory (``ru_maxrss`` of that one child, from ``os.wait4``) and
wall time are printed, then the ratio of the longest clip's peak to the shortest's. Under a
budget the KV memory is bounded, so the peak should stay put as the clip grows (the bar: a
60-minute clip within 1.5x of a 5-minute one).

The clips are generated in the classic world (``omnimem generate --duration``, up to 3,600 s).
TinyOmni was trained on clips of up to 120 s, so the answers on long clips mean little; memory is
the point. Clips are kept in ``--work`` and reused on the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

OMNIMEM = [sys.executable, "-m", "omnimem_ref.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 60.0])
    parser.add_argument("--budget", default="2048")
    parser.add_argument("--policy", default="omnimem")
    parser.add_argument("--work", type=Path, default=Path("/tmp/omnimem-eval-memory"))
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    rows = []
    for minutes in sorted(args.minutes):
        data = clip_folder(args.work, round(60 * minutes))
        rows.append({"minutes": minutes, **measure_eval(data, args.policy, args.budget)})
        print_row(rows[-1])
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"peak RSS ratio {rows[-1]['minutes']:g} min / {rows[0]['minutes']:g} min: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "ratio": ratio}, indent=2) + "\n")


def clip_folder(
    work: Path, seconds: int, n: int = 1, world: str = "classic", seed: int = 0
) -> Path:
    """A dataset folder holding ``n`` clips of ``seconds`` of ``world`` (made once, then reused)."""
    folder = work / (
        f"clip_{seconds}s" if (n, world) == (1, "classic") else f"{world}_{seconds}s_{n}"
    )
    if not (folder / "questions.json").is_file():
        started = time.perf_counter()
        command = ["generate", "--out", str(folder), "--n", str(n), "--seed", str(seed)]
        command += ["--world", world, "--duration", str(seconds), "--overwrite"]
        subprocess.run([*OMNIMEM, *command], check=True)
        print(
            f"generated {n} {world} clip(s) of {seconds} s in {time.perf_counter() - started:.0f} s"
        )
    return folder


def measure_eval(data: Path, policy: str, budget: str, checkpoint: Path | None = None) -> dict:
    """Run ``omnimem eval`` on ``data`` in a fresh process: its peak RSS and wall time."""
    command = [*OMNIMEM, "eval", "--data", str(data), "--policy", policy, "--budget", budget]
    command += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    child = subprocess.Popen([*command, "--json"], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"omnimem eval failed on {data}")
    child.returncode = 0  # reaped above
    summary = json.loads(output.strip().splitlines()[-1])
    duration = sf.info(str(data / "clip_0000.wav")).duration
    return {
        "clip_seconds": round(duration, 1),
        "peak_rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
        "wall_seconds": round(wall, 1),
        "accuracy": summary["accuracy"],
        "n": summary["n"],
        "by_family": summary["by_family"],
        "peak_kv_tokens": summary["peak_kv_tokens"],
    }


def print_row(row: dict) -> None:
    print(
        f"{row['minutes']:g} min ({row['clip_seconds']:g} s): peak RSS "
        f"{row['peak_rss_mib']:.0f} MiB, wall {row['wall_seconds']:.0f} s, "
        f"peak KV {row['peak_kv_tokens']} tokens/layer, accuracy {row['accuracy']:.2f}"
    )


if __name__ == "__main__":
    main()
