"""``scripts/training_step_cost.py``: one real training step on the shipped hard-world checkpoint,
its parts timed (docs/training.md, "Thirty minutes: what a CPU cannot train")."""

from __future__ import annotations

from omnimem_ref.model.checkpoint import DEFAULT_CHECKPOINT, load_model
from tests.script_loader import load_script

HARD = DEFAULT_CHECKPOINT.parent / "tinyomni-hard-fourth"


def test_a_step_on_a_one_minute_clip_is_rendered_run_and_backpropagated():
    cost = load_script("training_step_cost").step_cost(str(HARD), seconds=60.0, clips=1)
    spec = load_model(HARD)[0].config.feature_spec
    assert cost["tokens_per_clip"] == spec.n_steps(60.0) * spec.tokens_per_step == 540
    assert all(cost[part] > 0 for part in ("render_s", "forward_s", "backward_s"))
    assert cost["peak_rss_mib"] > 100
