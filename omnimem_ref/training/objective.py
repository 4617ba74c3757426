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
from omnimem_ref.training.batches import IGNORE, Batch, positions_of_steps, times_of_steps
from omnimem_ref.training.evidence import (
    evidence_loss,
    instance_groups,
    onset_tokens,
    question_attention,
    spread_loss,
)
from omnimem_ref.training.sequence import SequenceLayout, forward_sequence

# What a counting question's attention is asked for in the later layers, each target built on the
# one before (``attention_supervision_loss``): all of each instance's tokens, as any question's
# evidence; each instance's first step and one fixed token; an even share of the attention on
# each of those; that even share from every head, not only from their average.
COUNT_TARGETS = ("instances", "onsets", "spread", "spread-per-head")


@dataclass
class LossReport:
    loss: torch.Tensor
    answer_loss: float
    probe_loss: float
    evidence_loss: float
    correct: torch.Tensor  # (B, Q) bool, valid where answer_index != IGNORE


def prompt_ids(tokenizer: Tokenizer, device: torch.device | str) -> torch.Tensor:
    """The token ids of the prompt prefix every stream starts with."""
    return torch.tensor(encode(tokenizer, PROMPT), device=device)


def stream_embeddings(model: TinyOmniModel, batch: Batch) -> tuple[torch.Tensor, ...]:
    """Encoder outputs for the batch and the interleaved stream: (visual, audio, stream).
    Each token is embedded at its step's time, or its virtual step's in a stretched batch."""
    spec = model.config.feature_spec
    if batch.virtual_steps is None:
        timeline = StreamInputs(batch.patches[0], batch.audio[0], spec)
        frame_seconds, audio_seconds = timeline.frame_seconds(), timeline.audio_seconds()
    else:
        frame_seconds, audio_seconds = times_of_steps(spec, batch.virtual_steps)
    visual = model.encode_visual(batch.patches, frame_seconds)
    audio = model.encode_audio(batch.audio, audio_seconds)
    return visual, audio, model.interleave(visual, audio)


def stream_end_seconds(model: TinyOmniModel, batch: Batch) -> float:
    """The stream time at the end of the batch's clips (of its virtual steps' clip, if
    stretched): when the streaming session would be asked the questions."""
    spec = model.config.feature_spec
    if batch.virtual_steps is None:
        return batch.patches.shape[1] * spec.step_seconds
    return (int(batch.virtual_steps[-1]) + 1) * spec.step_seconds


def stream_positions(model: TinyOmniModel, batch: Batch, prefix: int) -> torch.Tensor | None:
    """The stream's rotary positions in a stretched batch (its virtual steps'), after a prompt of
    ``prefix`` tokens; None for the plain numbering (``SequenceLayout``'s default)."""
    if batch.virtual_steps is None:
        return None
    return positions_of_steps(model.config.feature_spec, prefix, batch.virtual_steps)


def question_ends(layout, batch: Batch) -> torch.Tensor:
    """(B, Q) index in the sequence of each question's last token (where its answer is read)."""
    first = layout.prefix + layout.stream
    starts = first + torch.arange(layout.n_questions, device=batch.question_last.device) * (
        layout.question_length
    )
    return starts.unsqueeze(0) + batch.question_last


def option_logits(model: TinyOmniModel, hidden: torch.Tensor, layout, batch: Batch) -> torch.Tensor:
    """(B, Q, MAX_OPTIONS) logits of each question's options, -inf for padding options."""
    last = question_ends(layout, batch)  # (B, Q)
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


def attention_supervision_loss(
    model: TinyOmniModel,
    layer_inputs: list[torch.Tensor],
    layout,
    batch: Batch,
    count_target: str = "instances",
    count_boost: float = 1.0,
) -> torch.Tensor:
    """Attention supervision at each question's last token (see ``evidence.py``): in the first
    half of the layers, attend to the question's own words (gather what is asked); in the second
    half, attend to the stream tokens that answer it (retrieve).

    ``count_target`` (``COUNT_TARGETS``) says what a counting question attends to. Softmax
    attention spread evenly over k instances and one fixed token gives that token the weight
    1 / (k + 1): the count, readable from the mix of values. Evidence that asks for all the mass
    on the instances (``instances``, as for every other question) leaves nothing that depends on
    k; ``onsets`` moves it to the first step of each instance plus the question's first word,
    which still leaves nothing that depends on k, since the mass may sit on that one token;
    ``spread`` asks for the even spread itself (``evidence.spread_loss``) of the head average,
    and ``spread-per-head`` of every head. With those two, ``count_boost`` weighs the counting
    questions' part of the later layers' loss that many times (``_mass_and_spread``)."""
    if count_target not in COUNT_TARGETS:
        raise ValueError(f"count_target must be one of {COUNT_TARGETS}, got {count_target!r}")
    onsets_and_sink = count_target != "instances"
    even_spread = count_target.startswith("spread")
    query_index = question_ends(layout, batch)
    b, n_q, _ = batch.evidence.shape
    device = batch.evidence.device
    in_stream = batch.evidence
    counting = _family_mask(batch, "counting").to(device)  # (B, Q)
    tokens_per_step = model.config.feature_spec.tokens_per_step
    stream = slice(layout.prefix, layout.prefix + layout.stream)
    if onsets_and_sink and counting.any():
        onsets = onset_tokens(in_stream, tokens_per_step)
        in_stream = torch.where(counting.unsqueeze(-1), onsets, in_stream)
    evidence = torch.zeros(b, n_q, layout.total, dtype=torch.bool, device=device)
    evidence[..., stream] = in_stream
    # A question's own words: from its first token up to its last (where it is asked).
    sequence = torch.arange(layout.total, device=device)
    first = query_index - batch.question_last  # (B, Q)
    words = (sequence >= first.unsqueeze(-1)) & (sequence <= query_index.unsqueeze(-1))
    words &= batch.evidence.any(-1, keepdim=True)  # padding questions have no target
    if onsets_and_sink:
        # the fixed token (an "attention sink"): each counting question's first word
        sink = (sequence == first.unsqueeze(-1)) & counting.unsqueeze(-1)
        evidence |= sink
    groups = None
    if even_spread:  # each instance a group of its own, and the sink one more (spread_loss)
        groups = torch.zeros(b, n_q, layout.total, dtype=torch.long, device=device)
        if counting.any():
            groups[..., stream] = instance_groups(onsets, tokens_per_step)
        groups.masked_fill_(sink, layout.stream // tokens_per_step + 1)
    positions = layout.positions().to(device).unsqueeze(0).expand(b, -1)
    visible = layout.visibility()
    n_layers = len(layer_inputs)
    losses = []
    for i in range(n_layers):
        log_weights = question_attention(model, i, layer_inputs[i], positions, query_index, visible)
        if i < n_layers // 2:
            losses.append(evidence_loss(log_weights, words))
        elif groups is not None:
            losses.append(
                _mass_and_spread(
                    log_weights,
                    evidence,
                    groups,
                    counting,
                    count_target == "spread-per-head",
                    count_boost,
                )
            )
        else:
            losses.append(evidence_loss(log_weights, evidence))
    return torch.stack(losses).mean()


def _mass_and_spread(
    log_weights: torch.Tensor,
    evidence: torch.Tensor,
    groups: torch.Tensor,
    counting: torch.Tensor,
    per_head: bool = False,
    count_boost: float = 1.0,
) -> torch.Tensor:
    """Counting questions spread their attention evenly over their instances and the fixed token
    (``spread_loss`` on ``groups``); the others put its mass on their evidence
    (``evidence_loss``); weighted by how many questions ask each, the counting part ``count_boost``
    times over:

        L = (1 - s) L_mass + count_boost * s * L_spread,   s = counting questions / questions.
    """
    asked = evidence.any(-1)
    spread_share = (asked & counting).sum() / asked.sum().clamp(min=1)
    mass = evidence_loss(log_weights, evidence & ~counting.unsqueeze(-1))
    spread = spread_loss(log_weights, groups * counting.unsqueeze(-1), per_head)
    return (1 - spread_share) * mass + count_boost * spread_share * spread


def _family_mask(batch: Batch, family: str) -> torch.Tensor:
    """(B, Q) bools: which questions of the batch are of ``family``."""
    return torch.tensor([[f == family for f in clip] for clip in batch.families])


def forward_batch(
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    batch: Batch,
    layer_inputs: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, SequenceLayout]:
    """The batch as one sequence through the model, as training sees it: the prompt, the stream
    at its (possibly stretched) positions, and every question asked at the stream's end. Returns
    the encoded patches and audio (for the probes), the last hidden states and the layout;
    ``layer_inputs``, if given, collects each layer's input (for attention supervision)."""
    prefix = prompt_ids(tokenizer, batch.patches.device)
    visual, audio, stream = stream_embeddings(model, batch)
    hidden, layout = forward_sequence(
        model,
        prefix,
        stream,
        batch.question_ids,
        layer_inputs=layer_inputs,
        stream_positions=stream_positions(model, batch, len(prefix)),
        asked_at=stream_end_seconds(model, batch),
    )
    return visual, audio, hidden, layout


def compute_loss(
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    batch: Batch,
    probe_weight: float = 1.0,
    evidence_weight: float = 0.0,
    count_target: str = "instances",
    count_boost: float = 1.0,
) -> LossReport:
    layer_inputs: list[torch.Tensor] | None = [] if evidence_weight > 0 else None
    visual, audio, hidden, layout = forward_batch(model, tokenizer, batch, layer_inputs)
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
    evidence = torch.zeros(())
    if layer_inputs is not None:
        evidence = attention_supervision_loss(
            model, layer_inputs, layout, batch, count_target, count_boost
        )
        loss = loss + evidence_weight * evidence
    return LossReport(loss, answer_loss.item(), probe.item(), evidence.item(), correct)
