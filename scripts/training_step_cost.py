"""What one training step costs on long clips: rendering, forward, backward, peak memory.

    python scripts/training_step_cost.py omnimem_ref/checkpoints/tinyomni-hard-fourth --seconds 600

Why: every hard-world schedule trained on clips of at most 2 minutes, and the 30-minute clips
did not follow (docs/training.md, "Thirty minutes: what a CPU cannot train"). Training on real
long clips is the next step, and this says what it costs. A step trains on every token of its
clips at once (``training/sequence.py``), so attention is quadratic in the clip's length: a
30-minute clip is 16,200 tokens. One batch of ``--clips`` fresh clips of ``--seconds`` seconds is
rendered (as a training worker does), then run through ``compute_loss`` with the training
settings of the checkpoint, and its loss backpropagated, each timed on its own.

Run one length per process: the peak resident memory printed is the process's.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.training.batches import make_batch
from omnimem_ref.training.objective import compute_loss
from omnimem_ref.training.train_tiny import saved_run, training_world


def step_cost(checkpoint: str, seconds: float, clips: int, seed: int = 0) -> dict[str, float]:
    """Seconds to render, run forward and backward one batch, and the peak RSS in MiB after."""
    model, tokenizer = load_model(checkpoint)
    config = saved_run(checkpoint, action="measure").config  # the checkpoint's own settings
    start = time.perf_counter()
    batch = make_batch(
        np.random.default_rng(seed), tokenizer, model.config.feature_spec, clips, seconds,
        world=training_world(config),
    )  # fmt: skip
    rendered = time.perf_counter()
    report = compute_loss(
        model, tokenizer, batch, config.probe_weight, config.evidence_weight,
        config.count_target, config.count_boost,
    )  # fmt: skip
    forward = time.perf_counter()
    report.loss.backward()
    backward = time.perf_counter()
    return {
        "tokens_per_clip": batch.evidence.shape[-1],
        "render_s": rendered - start,
        "forward_s": forward - rendered,
        "backward_s": backward - forward,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a TinyOmni checkpoint folder written by train-tiny")
    parser.add_argument("--seconds", type=float, default=600.0, help="clip length (default 600)")
    parser.add_argument("--clips", type=int, default=2, help="clips in the batch (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cost = step_cost(args.checkpoint, args.seconds, args.clips)
    print(
        f"{args.clips} clips of {args.seconds:g} s ({cost['tokens_per_clip']:,} tokens each): "
        f"render {cost['render_s']:.1f} s, forward {cost['forward_s']:.1f} s, backward "
        f"{cost['backward_s']:.1f} s, peak RSS {cost['peak_rss_mib']:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
