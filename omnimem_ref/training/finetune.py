"""Budget-aware LoRA fine-tuning: train the model to answer from the memory a policy keeps.

docs/design.md §5, by the two-pass scheme:

1. **Select, without gradients.** Stream each training clip through a :class:`StreamingSession`
   with the policy at a budget drawn for this batch. The session records, for every token, what
   was in memory when it was processed (``replay_visibility``), per layer.
2. **Learn, with gradients.** One forward pass over ``[prompt | stream | questions]`` with those
   visibilities as per-layer 4D masks (each question sees the final memory and itself). Its
   hidden states equal the streaming session's (``tests/test_finetune.py``), so the loss is the
   loss of the compressed model, and it is differentiable.

Only LoRA adapters on the backbone's attention projections learn (peft); the base weights stay
frozen, so the adapter is small and can be switched off to get the original model back. The loss
is the answer cross-entropy, plus optionally a distillation term
``KL(p_full || p_compressed)`` towards the base model's answer distribution with full memory;
some batches are drawn with full memory (budget 1.0) so full-memory answers do not degrade.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.adapter import (
    LORA_TARGETS,
    attach_lora,
    lora_config,
    model_fingerprint,
    save_adapter,
)
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import prompt_length
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.streaming.stream import StreamInputs
from omnimem_ref.training.batches import IGNORE, Batch, make_batch
from omnimem_ref.training.objective import (
    option_logits,
    prompt_ids,
    stream_embeddings,
    stream_end_seconds,
)
from omnimem_ref.training.sequence import SequenceLayout, forward_sequence
from omnimem_ref.training.train_tiny import track_accuracy, window_accuracy
from omnimem_ref.world.presets import preset


@dataclass
class FinetuneConfig:
    policy: str = "omnimem"
    budgets: tuple[float, ...] = (0.03, 0.05)  # fractions of the stream, one drawn per batch
    full_memory_share: float = 0.2  # share of batches trained with full memory
    steps: int = 300
    clips_per_batch: int = 4
    min_seconds: float = 16.0
    max_seconds: float = 64.0
    learning_rate: float = 2e-3
    rank: int = 8
    alpha: int = 16
    distill_weight: float = 1.0
    seed: int = 0
    world: str = "classic"  # the preset clips are drawn from: the base model's (world/presets.py)
    log_every: int = 10
    targets: tuple[str, ...] = LORA_TARGETS

    def lora(self) -> LoraConfig:
        return lora_config(self.rank, self.alpha, self.targets)


def compressed_visibility(session: StreamingSession, layout: SequenceLayout) -> torch.Tensor:
    """(layers, total, total) masks for ``[prompt | stream | questions]`` after ``session``.

    Prompt and stream tokens see what was in memory when they were processed; every question
    sees the final memory of each layer, plus its own earlier words (never the other questions).
    """
    streamed = session.replay_visibility()  # (layers, n, n), n = prompt + stream
    n_layers, n, _ = streamed.shape
    assert n == layout.prefix + layout.stream
    visible = layout.visibility().to(streamed.device).unsqueeze(0).repeat(n_layers, 1, 1)
    visible[:, :n, :n] = streamed
    visible[:, n:, :n] = False
    assert session.memory.meta is not None
    for layer, kept in enumerate(session.memory.meta.position):
        visible[layer, n:, kept] = True
    return visible


@torch.no_grad()
def select_memory(
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    batch: Batch,
    policy: str,
    fraction: float,
    layout: SequenceLayout,
) -> torch.Tensor:
    """Pass 1: stream each clip under ``policy`` at ``fraction`` of its tokens; return the
    (layers, B, total, total) visibilities the second pass trains with."""
    was_training = model.training
    spec = model.config.feature_spec
    full_tokens = layout.prefix + layout.stream
    budget = max(layout.prefix + 1, round(fraction * full_tokens))  # always room past the prompt
    masks = []
    for patches, audio in zip(batch.patches, batch.audio, strict=True):
        session = StreamingSession(
            model, tokenizer, make_policy(policy), budget, record_history=True
        )
        session.stream(StreamInputs(patches, audio, spec))
        masks.append(compressed_visibility(session, layout))
    model.train(was_training)
    return torch.stack(masks, dim=1)


def answer_logits_for(
    model: TinyOmniModel, tokenizer: Tokenizer, batch: Batch, visible: torch.Tensor | None
) -> torch.Tensor:
    """(B, Q, options) option logits of one forward pass, masked by ``visible`` if given."""
    prefix = prompt_ids(tokenizer, batch.patches.device)
    _, _, stream = stream_embeddings(model, batch)
    asked_at = stream_end_seconds(model, batch)
    hidden, layout = forward_sequence(
        model, prefix, stream, batch.question_ids, visible, asked_at=asked_at
    )
    return option_logits(model, hidden, layout, batch)


def batch_layout(tokenizer: Tokenizer, batch: Batch, tokens_per_step: int) -> SequenceLayout:
    """Where prompt, stream and questions sit in ``batch``'s one-pass sequence (what
    ``forward_sequence`` will lay out), known before running it so masks can be built."""
    _, n_q, q_len = batch.question_ids.shape
    stream = batch.patches.shape[1] * tokens_per_step
    return SequenceLayout(prompt_length(tokenizer), stream, n_q, q_len)


def finetune_loss(
    peft_model: PeftModel,
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    batch: Batch,
    visible: torch.Tensor | None,
    distill_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 2: answer cross-entropy (+ distillation) under ``visible``; returns (loss, correct)."""
    logits = answer_logits_for(model, tokenizer, batch, visible)
    flat = logits.flatten(0, 1).nan_to_num(neginf=-1e4)
    answers = batch.answer_index.flatten()
    loss = F.cross_entropy(flat, answers, ignore_index=IGNORE)
    if distill_weight > 0:
        with torch.no_grad(), peft_model.disable_adapter():
            teacher = answer_logits_for(model, tokenizer, batch, None)
        teacher = teacher.flatten(0, 1).nan_to_num(neginf=-1e4).log_softmax(-1)
        valid = answers != IGNORE
        kl = F.kl_div(
            flat.log_softmax(-1)[valid], teacher[valid], log_target=True, reduction="batchmean"
        )
        loss = loss + distill_weight * kl
    return loss, logits.argmax(-1) == batch.answer_index


def finetune_step(
    peft_model: PeftModel,
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    visible: torch.Tensor | None,
    distill_weight: float,
) -> tuple[float, torch.Tensor]:
    """One optimizer step of pass 2 on the adapters; returns (loss, correct answers)."""
    model.train()
    loss, correct = finetune_loss(peft_model, model, tokenizer, batch, visible, distill_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    model.eval()
    return loss.item(), correct


def finetune(
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    out_dir: str | Path,
    config: FinetuneConfig,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> list[dict]:
    """Train a LoRA adapter for ``config.policy`` and save it to ``out_dir`` (peft format).

    Clips are rendered on the CPU; both passes run on ``device``."""
    if make_policy(config.policy).head_wise:  # an unknown name fails before any work, too
        raise OmniMemError(
            f"Budget-aware fine-tuning replays memory as one mask per layer, which a head-wise "
            f"policy ({config.policy}) cannot give; fine-tune with its layer-wise form."
        )
    world = preset(config.world)  # an unknown world fails before any work
    fingerprint = model_fingerprint(model)
    torch.nn.Module.to(model, device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 2])
    peft_model = attach_lora(model, config.lora())
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    spec = model.config.feature_spec
    per_step = spec.tokens_per_step
    log: list[dict] = []
    window: dict[str, list[bool]] = {f: [] for f in world.families}
    losses: list[float] = []
    start = time.time()
    for step in tqdm(range(config.steps), disable=not progress, desc="finetune"):
        duration = float(rng.uniform(config.min_seconds, config.max_seconds))
        batch = make_batch(rng, tokenizer, spec, config.clips_per_batch, duration, world=world).to(
            device
        )
        fraction = (
            1.0 if rng.random() < config.full_memory_share else float(rng.choice(config.budgets))
        )
        layout = batch_layout(tokenizer, batch, per_step)
        visible = None
        if fraction < 1.0:
            visible = select_memory(model, tokenizer, batch, config.policy, fraction, layout)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        loss, correct = finetune_step(
            peft_model, model, tokenizer, optimizer, batch, visible, config.distill_weight
        )
        losses.append(loss)
        track_accuracy(window, batch, correct)
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            log.append(
                {
                    "step": step + 1,
                    "seconds": round(time.time() - start, 1),
                    "clip_seconds": round(batch.patches.shape[1] * spec.step_seconds),
                    "loss": round(float(np.mean(losses)), 4),
                    "accuracy": window_accuracy(window),
                }
            )
            window, losses = {f: [] for f in world.families}, []
    save_adapter(peft_model, out_dir, {"base_model": fingerprint, **_info(config), "log": log})
    return log


def _learning_rate(config: FinetuneConfig, step: int) -> float:
    """Cosine decay from the peak to 10% of it."""
    progress = step / max(1, config.steps - 1)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _info(config: FinetuneConfig) -> dict:
    info = asdict(config)
    info["budgets"], info["targets"] = list(config.budgets), list(config.targets)
    return {"finetune_config": info}
