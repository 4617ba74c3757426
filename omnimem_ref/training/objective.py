"""TinyOmni's training loss: answers, plus per-token probe targets (dense supervision).

Answer loss: cross-entropy over each question's options (the closed answer vocabulary), read at
the question's last token. Probe loss: cross-entropy of the linear probes on the encoders' outputs
and on the backbone's final hidden states. Without the probes a tiny model takes hours to find the
evidence in the stream; with them it learns in minutes (see the README's training notes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from omnimem_ref.model.modeling import AUDIO_PROBE_CLASSES, VISUAL_PROBE_CLASSES, TinyOmniModel
from omnimem_ref.model.tokenizer import PROMPT, encode
from omnimem_ref.streaming.stream import StreamInputs
from omnimem_ref.training.batches import IGNORE, Batch
from omnimem_ref.training.sequence import forward_sequence


@dataclass
class LossReport:
    loss: torch.Tensor
    answer_loss: float
    probe_loss: float
    correct: torch.Tensor  # (B, Q) bool, valid where answer_index != IGNORE


def stream_embeddings(model: TinyOmniModel, batch: Batch) -> tuple[torch.Tensor, ...]:
    """Encoder outputs for the batch and the interleaved stream: (visual, audio, stream)."""
    spec = model.config.feature_spec
    timeline = StreamInputs(batch.patches[0], batch.audio[0], spec)
    visual = model.encode_visual(batch.patches, timeline.frame_seconds())
    audio = model.encode_audio(batch.audio, timeline.audio_seconds())
    return visual, audio, model.interleave(visual, audio)


def option_logits(model: TinyOmniModel, hidden: torch.Tensor, layout, batch: Batch) -> torch.Tensor:
    """(B, Q, MAX_OPTIONS) logits of each question's options, -inf for padding options."""
    starts = (
        layout.prefix + layout.stream + torch.arange(layout.n_questions) * layout.question_length
    )
    last = starts.unsqueeze(0) + batch.question_last  # (B, Q)
    h = torch.gather(hidden, 1, last.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    vocab_logits = model.answer_logits(h)  # (B, Q, V)
    logits = torch.gather(vocab_logits, 2, batch.option_ids)
    return logits.masked_fill(~batch.option_valid, float("-inf"))


def _probe_loss(
    logits: torch.Tensor, targets: torch.Tensor, classes: dict[str, int]
) -> torch.Tensor:
    losses = []
    for i, (chunk, n) in enumerate(
        zip(logits.split(list(classes.values()), -1), classes.values(), strict=True)
    ):
        if i < targets.shape[-1]:
            losses.append(F.cross_entropy(chunk.reshape(-1, n), targets[..., i].reshape(-1)))
    return torch.stack(losses).sum()


def compute_loss(
    model: TinyOmniModel, tokenizer: Tokenizer, batch: Batch, probe_weight: float = 1.0
) -> LossReport:
    prefix = torch.tensor(encode(tokenizer, PROMPT))
    visual, audio, stream = stream_embeddings(model, batch)
    hidden, layout = forward_sequence(model, prefix, stream, batch.question_ids)
    logits = option_logits(model, hidden, layout, batch)
    answer_loss = F.cross_entropy(
        logits.flatten(0, 1).nan_to_num(neginf=-1e4),
        batch.answer_index.flatten(),
        ignore_index=IGNORE,
    )
    p, a = visual.shape[-2], audio.shape[-2]
    stream_hidden = hidden[:, layout.prefix : layout.prefix + layout.stream]
    stream_hidden = stream_hidden.reshape(*visual.shape[:2], p + a, -1)
    v_hidden, a_hidden = stream_hidden[:, :, :p], stream_hidden[:, :, p:]
    probe = (
        _probe_loss(
            model.visual_probe["encoder"](visual), batch.visual_targets, VISUAL_PROBE_CLASSES
        )
        + _probe_loss(
            model.visual_probe["backbone"](v_hidden), batch.visual_targets, VISUAL_PROBE_CLASSES
        )
        + _probe_loss(
            model.audio_probe["encoder"](audio), batch.audio_targets[..., :2], AUDIO_PROBE_CLASSES
        )
        + _probe_loss(
            model.audio_probe["backbone"](a_hidden), batch.audio_targets, AUDIO_PROBE_CLASSES
        )
    )
    correct = logits.argmax(-1) == batch.answer_index
    loss = answer_loss + probe_weight * probe
    return LossReport(loss, answer_loss.item(), probe.item(), correct)
