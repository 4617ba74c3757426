"""Does a checkpoint count as `--count-target spread` asks? Its attention on counting questions.

    python scripts/counting_attention.py omnimem_ref/checkpoints/tinyomni-hard --batches 12

`--count-target spread` (docs/training.md, "When and how many") asks a counting question's last
token, in the second half of the layers, to spread its attention evenly over the k instances of
what it counts and one fixed token (the question's first word), so that the fixed token keeps

    a_fixed = 1 / (k + 1),

a weight that tells k apart. This script draws fresh hard-world batches (a seed no training run
uses), runs the checkpoint on them exactly as training does, and prints, per layer and count k:
the fixed token's weight averaged over heads (what the loss sees) and per head (what each head's
value mix can read), each instance's share, and how often the answer is right.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from tokenizers import Tokenizer

from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.training.batches import make_batch
from omnimem_ref.training.evidence import instance_groups, onset_tokens, question_attention
from omnimem_ref.training.objective import forward_batch, option_logits, question_ends
from omnimem_ref.world import HARD


def counting_rows(
    model: TinyOmniModel, tokenizer: Tokenizer, batches: int, seed: int
) -> list[dict]:
    """One row per counting question and later layer: k, the fixed token's weight per head, the
    mean share of an instance, and whether the answer was right."""
    spec = model.config.feature_spec
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batches):
        batch = make_batch(rng, tokenizer, spec, 4, 60.0, world=HARD)
        layer_inputs: list[torch.Tensor] = []
        _, _, hidden, layout = forward_batch(model, tokenizer, batch, layer_inputs)
        right = option_logits(model, hidden, layout, batch).argmax(-1) == batch.answer_index
        ends = question_ends(layout, batch)
        first_word = ends - batch.question_last
        per_step = spec.tokens_per_step
        groups = instance_groups(onset_tokens(batch.evidence, per_step), per_step)
        positions = layout.positions().unsqueeze(0).expand(len(batch.families), -1)
        visible = layout.visibility()  # the same for every layer
        stream_slice = slice(layout.prefix, layout.prefix + layout.stream)
        asked = [  # (b, q, the group number of each instance) of every counting question
            (b, q, sorted(set(groups[b, q][groups[b, q] > 0].tolist())))
            for b, families in enumerate(batch.families)
            for q, family in enumerate(families)
            if family == "counting"
        ]
        for layer in range(len(layer_inputs) // 2, len(layer_inputs)):
            weights = question_attention(
                model, layer, layer_inputs[layer], positions, ends, visible
            ).exp()  # (B, heads, Q, total)
            for b, q, instances in asked:
                if not instances:
                    continue
                in_stream = weights[b, :, q, stream_slice].mean(0)
                shares = [in_stream[groups[b, q] == i].sum().item() for i in instances]
                rows.append(
                    {
                        "layer": layer,
                        "k": len(instances),
                        "fixed_per_head": weights[b, :, q, first_word[b, q]].tolist(),
                        "instance_share": float(np.mean(shares)),
                        "right": bool(right[b, q]),
                    }
                )
    return rows


def report(rows: list[dict]) -> str:
    """The table: one line per later layer and count k, averaged over its questions."""
    by = defaultdict(list)
    for row in rows:
        by[row["layer"], row["k"]].append(row)
    lines = [
        f"{'layer':>5}{'k':>3}{'questions':>11}{'fixed (mean of heads)':>23}{'1/(k+1)':>9}"
        f"{'each instance':>15}{'right':>7}   fixed token's weight per head"
    ]
    for (layer, k), group in sorted(by.items()):
        per_head = np.mean([r["fixed_per_head"] for r in group], axis=0)
        cells = " ".join(f"{w:.2f}" for w in per_head)
        lines.append(
            f"{layer:>5}{k:>3}{len(group):>11}{per_head.mean():>23.3f}{1 / (k + 1):>9.3f}"
            f"{np.mean([r['instance_share'] for r in group]):>15.3f}"
            f"{np.mean([r['right'] for r in group]):>7.2f}   {cells}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a TinyOmni folder trained on the hard world")
    parser.add_argument("--batches", type=int, default=12, help="batches of 4 one-minute clips")
    parser.add_argument("--seed", type=int, default=98765, help="seed of the fresh clips")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load_model(args.checkpoint)
    with torch.no_grad():
        print(report(counting_rows(model, tokenizer, args.batches, args.seed)))


if __name__ == "__main__":
    main()
