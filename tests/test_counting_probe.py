"""``scripts/counting_probe.py``: the cross-validated linear probe finds a count that is linearly in
the state and does not find one that is not, and it reads the shipped hard checkpoint's states
(docs/training.md, "Counting, read from attention")."""

from __future__ import annotations

import numpy as np
import torch

from omnimem_ref.model.checkpoint import DEFAULT_CHECKPOINT, load_model
from tests.script_loader import load_script

probe = load_script("counting_probe")


def test_the_probe_reads_a_planted_count_and_not_a_shuffled_one():
    """300 states of 32 dimensions; k is the argmax of three fixed directions plus noise."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 32))
    k = (x @ rng.normal(size=(32, 3))).argmax(1) + 1
    assert (
        probe.cross_validated(x, k, seed=0) == k
    ).mean() > 0.8  # 0.86 measured; 1.0 is out of reach with L2 and 240 fits
    shuffled = rng.permutation(k)
    assert (probe.cross_validated(x, shuffled, seed=0) == shuffled).mean() < 0.5  # chance ~0.35


def test_the_probe_reads_the_hard_checkpoint_states():
    model, tokenizer = load_model(DEFAULT_CHECKPOINT.parent / "tinyomni-hard")
    with torch.no_grad():
        data = probe.counting_states(model, tokenizer, batches=2, seed=98765)
    n = len(data["k"])
    assert n >= 10 and set(data["k"]) <= {1, 2, 3}
    assert data["states"].shape == (n, 5, 128)  # the 4 layers' inputs and the last hidden state
    assert 0 < data["audio"].sum() < n  # both tones and objects are counted
    table = probe.report(data, seed=0).splitlines()
    assert table[-1].startswith("last hidden state") and len(table) == 3 + 5
