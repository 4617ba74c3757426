"""One forward pass over whole clips plus all their questions, for training.

The layout is ``[prompt | stream | question 1 | question 2 | ...]``. Each question sees the prompt,
the stream and itself, never the other questions, and its positions start where the stream ends,
exactly as if it were the only question asked after streaming. So one pass trains several
questions, and the logits equal the streaming session's (tested in ``tests/test_streaming.py``).

The stream's rotary positions follow the prompt's one by one, unless ``stream_positions`` says
otherwise (a stretched batch, :func:`~omnimem_ref.training.batches.stretched`): the questions
then start right after the last of them, as they would after that stream.

``stream_visible`` lets a caller hide stream tokens from later queries: the two-pass trick that
makes budget-aware fine-tuning see the same memory the streaming session would have kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.masks import attention_mask
from omnimem_ref.model.modeling import TinyOmniModel


@dataclass
class SequenceLayout:
    prefix: int
    stream: int
    n_questions: int
    question_length: int
    stream_positions: torch.Tensor | None = None  # (stream,); None: prefix, prefix + 1, ...

    @property
    def total(self) -> int:
        return self.prefix + self.stream + self.n_questions * self.question_length

    def positions(self) -> torch.Tensor:
        """(total,) rotary positions: the prompt's from 0, the stream's, then each question's
        from one past the stream's last (all questions alike, as each is asked alone)."""
        if self.stream_positions is None:
            context = torch.arange(self.prefix + self.stream)
        else:
            prompt = torch.arange(self.prefix, device=self.stream_positions.device)
            context = torch.cat([prompt, self.stream_positions])
        question = context[-1] + 1 + torch.arange(self.question_length, device=context.device)
        return torch.cat([context, question.repeat(self.n_questions)])

    def visibility(self) -> torch.Tensor:
        """(total, total) booleans: causal over prompt and stream, questions side by side."""
        n_ctx, q = self.prefix + self.stream, self.question_length
        visible = torch.ones(self.total, self.total, dtype=torch.bool).tril()
        for i in range(self.n_questions):
            start = n_ctx + i * q
            visible[start : start + q, n_ctx:start] = False  # earlier questions are invisible
        return visible


def forward_sequence(
    model: TinyOmniModel,
    prefix_ids: torch.Tensor,
    stream_embeddings: torch.Tensor,
    question_ids: torch.Tensor,
    visible: torch.Tensor | None = None,
    layer_inputs: list[torch.Tensor] | None = None,
    stream_positions: torch.Tensor | None = None,
    asked_at: float | None = None,
) -> tuple[torch.Tensor, SequenceLayout]:
    """Final hidden states (B, total, hidden) for ``[prefix | stream | questions]``.

    ``prefix_ids`` (P,), ``stream_embeddings`` (B, S, hidden), ``question_ids`` (B, Q, L).
    ``visible`` overrides the default visibility: (total, total) or (B, total, total) for all
    layers, or (layers, B, total, total) for a different mask in each layer. A list passed as
    ``layer_inputs`` receives each layer's input hidden states (for evidence supervision).
    ``stream_positions`` (S,) overrides the stream's rotary positions (module docstring).
    ``asked_at`` is the stream time the questions are asked at (the stream's end), which a model
    with ``question_time`` adds to their embeddings as the streaming session does.
    """
    b, n_q, q_len = question_ids.shape
    layout = SequenceLayout(
        len(prefix_ids), stream_embeddings.shape[1], n_q, q_len, stream_positions
    )
    prefix = model.embed_text(prefix_ids).unsqueeze(0).expand(b, -1, -1)
    questions = model.embed_text(question_ids.flatten(1), seconds=asked_at)
    embeddings = torch.cat([prefix, stream_embeddings, questions], dim=1)
    if visible is None:
        visible = layout.visibility()
    positions = layout.positions().to(embeddings.device).unsqueeze(0).expand(b, -1)
    if visible.dim() == 4:  # one visibility per layer
        return _forward_per_layer(model, embeddings, positions, visible), layout
    mask = attention_mask(visible.to(embeddings.device), model.backbone.config, embeddings.dtype)
    out = model.backbone(
        inputs_embeds=embeddings,
        attention_mask=mask,
        position_ids=positions,
        use_cache=False,
        output_hidden_states=layer_inputs is not None,
    )
    if layer_inputs is not None:  # hidden_states[i] is the input of layer i (the last: output)
        layer_inputs.extend(out.hidden_states[: len(model.backbone.layers)])
    return out.last_hidden_state, layout


def _forward_per_layer(
    model: TinyOmniModel, embeddings: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor
) -> torch.Tensor:
    """The backbone's own layers, run one by one so each gets its own mask.

    ``visible`` is (layers, B, total, total): with per-layer eviction, each layer of the
    streaming session kept a different set of tokens.
    """
    backbone = model.backbone
    rotary = backbone.rotary_emb(embeddings, positions)
    hidden = embeddings
    for layer, layer_visible in zip(backbone.layers, visible, strict=True):
        mask = attention_mask(layer_visible, backbone.config, embeddings.dtype)
        hidden = layer(
            hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary
        )
    return backbone.norm(hidden)
