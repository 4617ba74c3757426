"""``frame_context``: patch tokens that see the patches around them, in their own frame only."""

from __future__ import annotations

import json

import torch

from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.model.configuration import TinyOmniConfig, tiny_text_config
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.training.train_tiny import TrainConfig, train_tiny
from tests.cli_runner import run_cli


def framed_model(frame_context: bool) -> TinyOmniModel:
    """A new small TinyOmni, with or without ``frame_context`` (whose gate starts closed, at 0)."""
    torch.manual_seed(0)
    text = tiny_text_config(build_tokenizer().get_vocab_size(), layers=2, width=64)
    return TinyOmniModel(TinyOmniConfig(text_config=text, frame_context=frame_context)).eval()


def changed_tokens(model: TinyOmniModel, step: int, patch: int) -> torch.Tensor:
    """(steps, P) booleans: which visual tokens move when one patch of one frame changes."""
    spec = model.config.feature_spec
    patches = torch.rand(2, spec.visual_tokens_per_step, spec.patch_dim)
    seconds = torch.tensor([0.0, 2.0])
    touched = patches.clone()
    touched[step, patch] = torch.rand(spec.patch_dim)  # not a constant shift: LayerNorm
    with torch.no_grad():
        before = model.encode_visual(patches, seconds)
        after = model.encode_visual(touched, seconds)
    return (after - before).abs().amax(dim=-1) > 1e-6


def test_a_patch_reaches_its_3x3_neighbours_in_its_own_frame_only():
    model = framed_model(frame_context=True)
    assert model.frame_context is not None
    with torch.no_grad():
        model.frame_context.gate.fill_(1.0)  # opened, as training would
    grid = model.config.feature_spec.grid
    changed = changed_tokens(model, step=0, patch=grid + 1)  # cell (1, 1)
    cells = torch.arange(grid * grid)
    rows, cols = cells // grid, cells % grid  # patches are row-major over the grid
    neighbours = (rows <= 2) & (cols <= 2)  # cells (0..2, 0..2)
    assert changed[0].tolist() == neighbours.tolist()
    assert not changed[1].any()  # the other frame is untouched


def test_without_frame_context_a_patch_reaches_only_itself():
    model = framed_model(frame_context=False)
    changed = changed_tokens(model, step=0, patch=5)
    assert changed.nonzero().tolist() == [[0, 5]]


def test_a_new_frame_context_starts_closed():
    """The gate starts at zero: a new model reads each patch alone, as one without the option."""
    model = framed_model(frame_context=True)
    assert model.frame_context is not None and model.frame_context.gate.item() == 0.0
    assert changed_tokens(model, step=0, patch=5).nonzero().tolist() == [[0, 5]]


def test_the_shipped_checkpoint_has_no_frame_context():
    model, _ = load_model()
    assert model.frame_context is None and not model.config.frame_context


def test_train_tiny_saves_a_model_with_frame_context(tmp_path):
    config = TrainConfig(
        steps=1, workers=1, clips_per_batch_at_40s=2, min_seconds=16, max_seconds=16,
        curriculum_seconds=16, log_every=1, frame_context=True,
    )  # fmt: skip
    train_tiny(tmp_path / "ckpt", config, progress=False)
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["frame_context"]
    model, _ = load_model(tmp_path / "ckpt")
    assert model.frame_context is not None


def test_train_tiny_takes_frame_context_from_the_command_line(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "train-tiny", "--out", str(tmp_path / "x"), "--frame-context", "--width", "100"
    )
    # accepted by the parser, which goes on to refuse the width in its one sentence
    assert code == 2 and err.count("\n") == 1 and "--width a multiple of 64" in err, err
