"""Is the count in the model's state? A linear probe of k on counting questions, layer by layer.

    python scripts/counting_probe.py omnimem_ref/checkpoints/tinyomni-hard --batches 60

A counting question ("how many times did the high tone play?") is answered from the hidden state
of its last token. If a linear probe can read the count k off that state while the model's own
answer cannot, what fails is the reading-out; if the probe cannot either, the count never reached
the state, and what fails is gathering the instances (docs/training.md, "Counting, read from
attention"). The same question for each layer's input says where along the depth k appears.

The probe is multinomial logistic regression on the standardised state, fitted and scored by
5-fold cross-validation (each question is scored by a probe that never saw it). Clips are fresh
hard-world batches from a seed no training run uses, run exactly as training runs them.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tokenizers import Tokenizer

from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.training.batches import make_batch
from omnimem_ref.training.evidence import instance_groups, onset_tokens
from omnimem_ref.training.objective import forward_batch, option_logits, question_ends
from omnimem_ref.world import HARD

FOLDS = 5


def counting_states(
    model: TinyOmniModel, tokenizer: Tokenizer, batches: int, seed: int
) -> dict[str, np.ndarray]:
    """Per counting question: the state at its last token at each depth (``states``, shape
    (questions, layers + 1, width): each layer's input, then the final hidden state), its count
    ``k``, whether it counts tones (``audio``), and whether the model answered it right."""
    spec = model.config.feature_spec
    rng = np.random.default_rng(seed)
    states, ks, audio, right = [], [], [], []
    for _ in range(batches):
        batch = make_batch(rng, tokenizer, spec, 4, 60.0, world=HARD)
        layer_inputs: list[torch.Tensor] = []
        _, _, hidden, layout = forward_batch(model, tokenizer, batch, layer_inputs)
        correct = option_logits(model, hidden, layout, batch).argmax(-1) == batch.answer_index
        ends = question_ends(layout, batch)
        per_step = spec.tokens_per_step
        groups = instance_groups(onset_tokens(batch.evidence, per_step), per_step)
        depths = [*layer_inputs, hidden]
        for b, families in enumerate(batch.families):
            for q, family in enumerate(families):
                k = len(set(groups[b, q][groups[b, q] > 0].tolist()))
                if family != "counting" or k == 0:
                    continue
                evidence = batch.evidence[b, q].nonzero().squeeze(-1)
                states.append(torch.stack([d[b, ends[b, q]] for d in depths]).numpy())
                ks.append(k)
                audio.append(bool((evidence % per_step >= spec.visual_tokens_per_step).all()))
                right.append(bool(correct[b, q]))
    return {
        "states": np.stack(states),
        "k": np.array(ks),
        "audio": np.array(audio),
        "right": np.array(right),
    }


def fit_probe(x: np.ndarray, y: np.ndarray, classes: int, l2: float = 1e-2) -> torch.nn.Linear:
    """Multinomial logistic regression, ``softmax(W x + b)``, minimising cross-entropy plus
    ``l2 * |W|^2`` with L-BFGS (x already standardised)."""
    probe = torch.nn.Linear(x.shape[1], classes)
    inputs, targets = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    optimiser = torch.optim.LBFGS(probe.parameters(), max_iter=200)

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(probe(inputs), targets)
        value = value + l2 * probe.weight.pow(2).sum()
        value.backward()
        return value

    optimiser.step(loss)
    return probe


def cross_validated(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Each question's probe prediction, from a probe fitted on the other folds."""
    folds = np.random.default_rng(seed).permutation(len(y)) % FOLDS
    classes = int(y.max()) + 1
    predicted = np.zeros_like(y)
    for fold in range(FOLDS):
        train, test = folds != fold, folds == fold
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        probe = fit_probe((x[train] - mean) / std, y[train], classes)
        with torch.no_grad():
            logits = probe(torch.as_tensor((x[test] - mean) / std, dtype=torch.float32))
        predicted[test] = logits.argmax(-1).numpy()
    return predicted


def report(data: dict[str, np.ndarray], seed: int) -> str:
    """One line per depth: the probe's accuracy overall, on tones and on objects, beside the
    model's own answers and the commonest count's share."""
    k, audio = data["k"], data["audio"]
    commonest = np.bincount(k).argmax()
    lines = [
        f"{len(k)} counting questions ({audio.sum()} of tones); k = 1, 2, 3: "
        + ", ".join(str(int((k == c).sum())) for c in (1, 2, 3))
        + f"; always answering {commonest}: {(k == commonest).mean():.2f}",
        f"the model's answers: {data['right'].mean():.2f} right (tones "
        f"{data['right'][audio].mean():.2f}, objects {data['right'][~audio].mean():.2f})",
        f"{'state':<18}{'probe':>7}{'tones':>7}{'objects':>9}",
    ]
    depths = data["states"].shape[1]
    for depth in range(depths):
        hit = cross_validated(data["states"][:, depth], k, seed) == k
        name = f"input of layer {depth}" if depth < depths - 1 else "last hidden state"
        lines.append(
            f"{name:<18}{hit.mean():>7.2f}{hit[audio].mean():>7.2f}{hit[~audio].mean():>9.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a TinyOmni folder trained on the hard world")
    parser.add_argument("--batches", type=int, default=60, help="batches of 4 one-minute clips")
    parser.add_argument("--seed", type=int, default=98765, help="seed of the fresh clips")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load_model(args.checkpoint)
    with torch.no_grad():
        data = counting_states(model, tokenizer, args.batches, args.seed)
    print(report(data, args.seed))


if __name__ == "__main__":
    main()
