"""Training TinyOmni: evidence supervision, the loss, and a few real optimisation steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnimem_ref.model.tokenizer import PROMPT, encode
from omnimem_ref.training.batches import make_batch, stretched
from omnimem_ref.training.evidence import evidence_tokens, question_attention
from omnimem_ref.training.objective import (
    compute_loss,
    question_ends,
    stream_embeddings,
    stream_positions,
)
from omnimem_ref.training.sequence import forward_sequence
from omnimem_ref.training.train_tiny import TrainConfig, train_tiny
from omnimem_ref.world import COLOURS, PITCHES, sample_scene
from omnimem_ref.world.questions import make_questions
from tests.model_fixtures import tiny_model


def test_evidence_is_what_the_question_names():
    from omnimem_ref.features import FeatureSpec
    from omnimem_ref.training.batches import clip_targets

    spec = FeatureSpec()
    scene = sample_scene(np.random.default_rng(3), 40.0, 3, 3)
    visual_t, audio_t = clip_targets(scene, spec)
    per_step = spec.visual_tokens_per_step + spec.audio_tokens_per_step
    for q in make_questions(scene, "c", np.random.default_rng(0)):
        marked = evidence_tokens(q, visual_t, audio_t).view(-1, per_step)
        visual, audio = marked[:, : spec.visual_tokens_per_step], marked[:, -2:]
        if q.family in ("visual", "temporal"):
            named = [list(COLOURS).index(w) + 1 for w in q.question.split() if w in COLOURS]
            assert torch.equal(visual, torch.isin(visual_t[..., 0], torch.tensor(named)))
            assert not audio.any()
        elif q.family == "audio":
            assert torch.equal(audio, audio_t[..., 1] == 2) and audio.any()
            assert not visual.any()
        else:  # binding: the audio tokens of the pitch it names
            pitch = next(list(PITCHES).index(w) + 1 for w in q.question.split() if w in PITCHES)
            assert torch.equal(audio, audio_t[..., 0] == pitch) and audio.any()


@pytest.mark.parametrize("stretch", [1.0, 40.0])
def test_question_attention_matches_the_layer(tokenizer, stretch):
    """The recomputed attention of a question's last token equals the layer's own weights, also
    in a stretched batch (whose rotary positions the evidence loss must use too)."""
    model = tiny_model()
    batch = make_batch(np.random.default_rng(1), tokenizer, model.config.feature_spec, 1, 16.0)
    batch = stretched(batch, stretch)
    prefix = torch.tensor(encode(tokenizer, PROMPT))
    _, _, stream = stream_embeddings(model, batch)
    inputs: list[torch.Tensor] = []
    captured: dict[int, torch.Tensor] = {}

    def keep_weights(layer):
        def hook(_module, _args, output):
            captured[layer] = output[1]

        return hook

    handles = [
        block.self_attn.register_forward_hook(keep_weights(i))
        for i, block in enumerate(model.backbone.layers)
    ]
    with torch.no_grad():
        model.backbone.config._attn_implementation = "eager"
        _, layout = forward_sequence(
            model,
            prefix,
            stream,
            batch.question_ids,
            layer_inputs=inputs,
            stream_positions=stream_positions(model, batch, len(prefix)),
        )
    for h in handles:
        h.remove()
    ends = question_ends(layout, batch)
    positions = layout.positions().unsqueeze(0)
    for layer in range(len(inputs)):
        with torch.no_grad():
            ours = question_attention(
                model, layer, inputs[layer], positions, ends, layout.visibility()
            ).exp()
        theirs = captured[layer][0][:, ends[0]]  # (heads, Q, total)
        assert torch.allclose(ours[0], theirs, atol=1e-5)


def test_loss_has_every_part_and_trains(tokenizer):
    model = tiny_model().train()
    batch = make_batch(np.random.default_rng(2), tokenizer, model.config.feature_spec, 2, 16.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = compute_loss(model, tokenizer, batch, 1.0, 1.0)
    assert first.evidence_loss > 0 and first.probe_loss > 0 and first.answer_loss > 0
    for _ in range(20):
        report = compute_loss(model, tokenizer, batch, 1.0, 1.0)
        optimizer.zero_grad()
        report.loss.backward()
        optimizer.step()
    last = compute_loss(model, tokenizer, batch, 1.0, 1.0)
    assert last.evidence_loss < 0.7 * first.evidence_loss
    assert last.loss < first.loss


def test_train_tiny_runs_with_two_workers_and_saves(tmp_path):
    config = TrainConfig(
        steps=2, workers=2, clips_per_batch_at_40s=2, min_seconds=16, max_seconds=20,
        curriculum_seconds=20, log_every=1,
    )  # fmt: skip
    log = train_tiny(tmp_path / "ckpt", config, progress=False)
    assert [e["step"] for e in log] == [1, 2]
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    assert not (tmp_path / "ckpt.tmp").exists()
