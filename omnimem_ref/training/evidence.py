"""Evidence supervision: teach each question to look at the tokens that answer it.

A question is answered by a handful of stream tokens among a thousand (the loud tone's two audio
tokens, the red object's patch in a few frames). At initialisation every question attends to all
tokens about equally, so the answer loss alone sends almost no gradient to the few that matter,
and a tiny model takes a very long time to discover retrieval. This auxiliary loss shows it where
to look: at the question's last token, in the later layers, the attention mass (averaged over
heads) on the evidence tokens should be high,

    L_evidence = - mean_{questions, layers} log( (1/H) Σ_h Σ_{j ∈ evidence} a_hj ).

The evidence is what the question names, read off the probe targets: the patches showing a colour
the question mentions (visual, temporal), the audio tokens of the pitch it mentions (binding), the
loud tone's audio tokens (audio). Where the question names an object by colour *and* shape ("the
red square", in the general world's questions) only patches showing both count. It is a training
aid only; nothing at inference time uses it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.world import COLOURS, PITCHES, SHAPES
from omnimem_ref.world.questions import Question

LOUD = 2  # the audio probe's loudness class of a loud tone (0 none, 1 soft, 2 loud)


def evidence_tokens(
    question: Question, visual_targets: torch.Tensor, audio_targets: torch.Tensor
) -> torch.Tensor:
    """(steps * (P + A),) bools over one clip's stream: the tokens ``question`` is about.

    ``visual_targets`` (steps, P, 2) and ``audio_targets`` (steps, A, 3) are the probe targets
    (class 0 = nothing), laid out as in the interleaved stream (each step: patches, then audio).
    """
    words = question.question.split()
    pitches = [list(PITCHES).index(w) + 1 for w in words if w in PITCHES]
    visual = torch.zeros(visual_targets.shape[:-1], dtype=torch.bool)
    for colour, shape in _named_objects(words):
        shown = visual_targets[..., 0] == colour
        visual |= shown if shape == 0 else shown & (visual_targets[..., 1] == shape)
    if question.family == "audio":
        audio = audio_targets[..., 1] == LOUD
    else:
        audio = torch.isin(audio_targets[..., 0], torch.tensor(pitches, dtype=torch.long))
    return torch.cat([visual, audio], dim=-1).flatten()


def _named_objects(words: list[str]) -> list[tuple[int, int]]:
    """(colour class, shape class or 0 for any shape) of each object a question names."""
    named = []
    for word, after in zip(words, [*words[1:], ""], strict=True):
        if word in COLOURS:
            shape = list(SHAPES).index(after) + 1 if after in SHAPES else 0
            named.append((list(COLOURS).index(word) + 1, shape))
    return named


def question_attention(
    model: TinyOmniModel,
    layer: int,
    layer_input: torch.Tensor,
    positions: torch.Tensor,
    query_index: torch.Tensor,
    visible: torch.Tensor,
) -> torch.Tensor:
    """Log attention weights (B, heads, Q, total) of the tokens at ``query_index`` (B, Q).

    Recomputed from the layer's input exactly as the layer computes them (RMSNorm, projections,
    RoPE, grouped heads, scaled dot product); ``visible`` (total, total) is the sequence's mask.
    """
    block: Any = model.backbone.layers[layer]  # a Qwen2DecoderLayer
    attention = block.self_attn
    b, total, _ = layer_input.shape
    d = attention.head_dim
    normed = block.input_layernorm(layer_input)
    cos, sin = model.backbone.rotary_emb(normed, positions)
    keys = attention.k_proj(normed).view(b, total, -1, d).transpose(1, 2)  # (B, kv, total, d)
    keys = apply_rotary_pos_emb(keys, keys, cos, sin)[0]
    at = query_index.unsqueeze(-1)  # (B, Q, 1)
    q_in = torch.gather(normed, 1, at.expand(-1, -1, normed.shape[-1]))
    queries = attention.q_proj(q_in).view(b, at.shape[1], -1, d).transpose(1, 2)  # (B, H, Q, d)
    q_cos = torch.gather(cos, 1, at.expand(-1, -1, d))
    q_sin = torch.gather(sin, 1, at.expand(-1, -1, d))
    queries = apply_rotary_pos_emb(queries, queries, q_cos, q_sin)[0]
    keys = keys.repeat_interleave(queries.shape[1] // keys.shape[1], dim=1)
    logits = queries @ keys.transpose(-1, -2) / math.sqrt(d)  # q·k / sqrt(d)
    allowed = visible.to(logits.device)[query_index].unsqueeze(1)  # (B, 1, Q, total)
    return logits.masked_fill(~allowed, float("-inf")).log_softmax(dim=-1)


def evidence_loss(log_weights: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
    """-log of the head-averaged attention mass on the evidence, averaged over questions.

    ``log_weights`` (B, H, Q, total); ``evidence`` (B, Q, total) bools. Questions without evidence
    (padding) are left out.
    """
    on_evidence = log_weights.masked_fill(~evidence.unsqueeze(1), float("-inf"))
    mass = on_evidence.logsumexp(dim=-1)  # log Σ_{j ∈ evidence} a_hj, (B, H, Q)
    head_mean = mass.logsumexp(dim=1) - math.log(mass.shape[1])  # log (1/H) Σ_h, (B, Q)
    has_evidence = evidence.any(dim=-1)
    if not has_evidence.any():
        return log_weights.new_zeros(())
    return -head_mean[has_evidence].mean()


def spread_loss(
    log_weights: torch.Tensor, groups: torch.Tensor, per_head: bool = False
) -> torch.Tensor:
    """Cross-entropy to an even spread over groups of evidence tokens, averaged over questions:

        L_spread = - mean_{questions} (1/G) Σ_g log( Σ_{j ∈ group g} (1/H) Σ_h a_hj ).

    With ``per_head`` each head must spread evenly on its own, and the loss is averaged over
    heads too: ``- mean_{questions, h} (1/G) Σ_g log Σ_{j ∈ g} a_hj``. The head average alone is
    met by giving the fixed token one whole head and the instances the others, which leaves no
    head whose mix of values depends on the count (docs/training.md, "Counting, read from
    attention").

    ``groups`` (B, Q, total) numbers each evidence token's group (0: not evidence; the numbers
    need not be consecutive). Where :func:`evidence_loss` is content with all the mass on any one
    evidence token, this is lowest when each group holds an equal share, so a group that is one
    fixed token, beside k others, keeps 1 / (k + 1) of it (``objective``, ``COUNT_TARGETS``).
    """
    weights = log_weights.exp()  # (B, H, Q, total)
    if per_head:
        groups = groups.unsqueeze(1).expand_as(weights)  # every head its own spread
    else:
        weights = weights.mean(dim=1)  # (B, Q, total), head-averaged
    slots = int(groups.max()) + 1
    mass = weights.new_zeros(*groups.shape[:-1], slots).scatter_add_(-1, groups, weights)
    present = torch.zeros_like(mass).scatter_add_(-1, groups, torch.ones_like(weights)) > 0
    present[..., 0] = False  # group 0 is everything that is not evidence
    n_groups = present.sum(dim=-1)  # (B, Q), or (B, H, Q) per head
    logs = mass.clamp(min=1e-12).log().masked_fill(~present, 0.0)
    asked = n_groups > 0
    if not asked.any():
        return log_weights.new_zeros(())
    return -(logs.sum(dim=-1)[asked] / n_groups[asked]).mean()


def instance_groups(onsets: torch.Tensor, tokens_per_step: int) -> torch.Tensor:
    """``onsets`` (..., steps · T) bools (:func:`onset_tokens`) numbered by their step plus one:
    each instance's first-step tokens form one group for :func:`spread_loss`."""
    steps = torch.arange(onsets.shape[-1], device=onsets.device) // tokens_per_step + 1
    return torch.where(onsets, steps, 0)


def onset_tokens(evidence: torch.Tensor, tokens_per_step: int) -> torch.Tensor:
    """``evidence`` (..., steps · T) kept only in the steps where it begins: a step with
    evidence right after one without (or the first step). One group of tokens per instance of
    what a counting question names, however long each instance lasts, so that attending to
    them evenly weighs every instance alike."""
    per_step = evidence.unflatten(-1, (-1, tokens_per_step))  # (..., steps, T)
    present = per_step.any(-1)  # (..., steps)
    before = torch.nn.functional.pad(present[..., :-1], (1, 0), value=False)
    starts = present & ~before
    return (per_step & starts.unsqueeze(-1)).flatten(-2)
