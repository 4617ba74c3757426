"""StreamingSession: feed a clip chunk by chunk, keep memory within budget, answer questions.

The protocol (docs/design.md §4):

1. The prompt prefix is written to memory first.
2. Each chunk (one or more 2-second steps: frame tokens, then audio tokens) is run through the
   backbone with explicit ``position_ids`` (original positions keep counting after evictions)
   and an explicit 4D mask (all of memory visible, causal inside the chunk). Its keys and values
   are appended to transformers' ``DynamicCache``. The model's stream makes the chunk
   (:class:`~omnimem_ref.core.Chunk`: embeddings, token metadata, rotary positions), so the
   same session drives TinyOmni and Qwen2.5-Omni's thinker (``docs/qwen2_5_omni.md``).
3. If a layer now holds more than ``budget`` tokens, the policy picks which to keep: ``budget``
   of them, or ``(1 - slack) · budget`` with a ``slack``, so that the next few chunks fit
   without compressing again (one compression then serves several chunks; memory still never
   holds more than the budget plus one chunk).
4. A question is appended the same way, its answer read from the logits of the option words,
   and its tokens are then dropped again, so memory is the same for every question.

With ``rotary_limit``, a chunk whose rotary positions would reach the limit (e.g. the model's
trained 32,768) first has memory's positions compacted, StreamingLLM-style
(:mod:`omnimem_ref.streaming.compaction`): for streams longer than the model's position range.

To replay its evictions as attention masks (:meth:`StreamingSession.replay_visibility`, which
budget-aware fine-tuning trains with), a session keeps a history: for every chunk, the positions
memory held before it, a budget's worth per layer, so it grows with the stream (an hour of
TinyOmni at a 2,048-token budget: ~120 MB). It is kept only with ``record_history=True`` (as
fine-tuning asks); a session that only answers questions keeps none, and its memory stays flat
however long the clip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from omnimem_ref.core import (
    TEXT,
    ChunkContext,
    KVMemory,
    StreamingModel,
    TokenMeta,
    cache_argument,
    plain_text_positions,
    record_rotary,
    rotary_position_ids,
    rotary_positions,
)
from omnimem_ref.errors import OmniMemError
from omnimem_ref.masks import attention_mask, chunk_visibility
from omnimem_ref.policies.base import CompressionPolicy
from omnimem_ref.streaming.compaction import compact, time_rows
from omnimem_ref.streaming.stream import Stream


@dataclass
class MemoryReport:
    """Memory after one chunk: the peak before compression and what stayed after it."""

    step: int  # last step of the chunk
    seconds: float  # stream time at the end of the chunk
    peak_tokens: int  # per layer, before compression
    tokens: dict[str, float]  # per modality, per layer (mean over layers), after compression
    bytes: dict[str, int]  # per modality, all layers, after compression
    compressed: bool
    prefill_seconds: float  # wall time of the chunk's forward pass
    compress_seconds: float  # wall time of scoring + selection + eviction (0 if none)

    @property
    def total_tokens(self) -> float:
        return sum(self.tokens.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


@dataclass
class Answer:
    choice: str
    probabilities: dict[str, float]
    logits: dict[str, float] | None = None  # each option's answer-token logit


class StreamingSession:
    """One pass over one clip with a bounded KV memory. See the module docstring."""

    def __init__(
        self,
        model: StreamingModel,
        tokenizer: Any,
        policy: CompressionPolicy | None = None,
        budget: int | None = None,
        steps_per_chunk: int = 1,
        slack: float = 0.0,
        rotary_limit: int | None = None,
        record_history: bool = False,
    ) -> None:
        if not 0 <= slack < 1:
            raise OmniMemError(f"The slack must be at least 0 and below 1, got {slack}.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompts = model.prompt_format(tokenizer)  # the model's own text conventions
        self.policy = policy  # None: nothing is ever evicted
        self.steps_per_chunk = steps_per_chunk
        text_config = model.config.text_config
        # One token set per layer, or per key/value head for a head-wise policy (policies.per_head).
        head_wise = policy is not None and policy.head_wise
        units_per_layer = text_config.num_key_value_heads if head_wise else 1
        self.memory = KVMemory(text_config.num_hidden_layers, units_per_layer)
        self.device = model.device  # token metadata lives beside the cache it describes
        self.next_position = 0
        self.next_rotary = 0  # the rotary position text appended now would start at
        # The model's rule for numbering text rotary positions (plain RoPE unless it has its own).
        self.text_positions = getattr(model, "text_positions", plain_text_positions)
        self.reports: list[MemoryReport] = []
        # (positions of the tokens appended, positions in memory per layer just before): enough to
        # replay this session's evictions as attention masks (see `replay_visibility`). It grows
        # with the stream, so it is kept only with `record_history`.
        self.record_history = record_history
        self.history: list[tuple[torch.Tensor, torch.Tensor]] = []
        prompt = torch.tensor(self.prompts.prompt_ids(), device=self.device)
        self.prefix_length = len(prompt)
        if budget is not None and budget < self.prefix_length:
            raise OmniMemError(
                f"A budget of {budget} tokens cannot even hold the {self.prefix_length}-token "
                f"prompt prefix; use a budget of at least {self.prefix_length}."
            )
        self.budget = budget
        self.slack = slack
        meta = _text_meta(len(prompt), 0, self.device)
        nothing = torch.zeros(self.memory.n_units, 0, dtype=torch.long, device=self.device)
        self._remember(meta.position, nothing)
        self._append(self.model.embed_text(prompt), meta, self.text_positions(prompt, 0))
        self.origin = self.next_rotary  # where the stream's rotary positions start
        self.rotary_limit = rotary_limit  # None: positions are never compacted
        self.time_shift = 0  # how far compactions have moved the stream's time back

    @torch.no_grad()
    def _append(
        self, embeddings: torch.Tensor, meta: TokenMeta, rotary: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Run ``embeddings`` (tokens, hidden) after memory at rotary positions ``rotary``
        (rows, tokens); return each layer's input and the final hidden states (the tuple
        transformers calls ``hidden_states``)."""
        n_chunk = embeddings.shape[0]
        visible = chunk_visibility(len(self.memory), n_chunk, self.device)
        mask = attention_mask(visible, self.model.backbone.config, embeddings.dtype)
        out = self.model.backbone(
            inputs_embeds=embeddings.unsqueeze(0),
            attention_mask=mask,
            position_ids=rotary_position_ids(rotary.unsqueeze(1)),  # (1, n) or (3, 1, n)
            **cache_argument(self.model.backbone, self.memory.cache),
            use_cache=True,
            output_hidden_states=True,
        )
        self.memory.record(meta)
        record_rotary(self.memory, rotary)
        self.next_position = int(meta.position[-1]) + 1
        self.next_rotary = int(rotary.max()) + 1
        return out.hidden_states

    def feed(self, inputs: Stream, steps: range) -> MemoryReport:
        """Write the tokens of ``steps`` to memory, then compress to the budget if needed."""
        model = self.model
        with torch.no_grad():
            chunk = inputs.chunk(model, steps, self.next_position, self.origin)
        meta = chunk.meta.map(lambda x: x.to(self.device))
        rotary = self._shifted(chunk.rotary.to(self.device), meta)
        if self.rotary_limit is not None and int(rotary.max()) >= self.rotary_limit:
            rotary = self._compact(rotary, meta)
        assert self.memory.meta is not None
        self._remember(meta.position, self.memory.meta.position)
        started = self._clock()
        hidden_states = self._append(chunk.embeddings, meta, rotary)
        prefilled = self._clock()
        peak = len(self.memory)
        compressed = self.policy is not None and self.budget is not None and peak > self.budget
        if compressed:
            assert self.policy is not None
            context = ChunkContext(
                model,
                hidden_states[:-1],
                meta.position,
                question_ids=self._question_ids,
                rotary=rotary,
                text_positions=self.text_positions,
            )
            with torch.no_grad():
                kept = self.policy.select(self.memory, self.compress_to(), context)
            self.memory.keep(kept)
        compress_seconds = self._clock() - prefilled if compressed else 0.0
        report = MemoryReport(
            step=steps.stop - 1,
            seconds=steps.stop * inputs.step_seconds,
            peak_tokens=peak,
            tokens=self.memory.tokens_by_modality(),
            bytes=self.memory.bytes_by_modality(),
            compressed=compressed,
            prefill_seconds=prefilled - started,
            compress_seconds=compress_seconds,
        )
        self.reports.append(report)
        return report

    def _remember(self, new: torch.Tensor, before: torch.Tensor) -> None:
        """Note, if this session records its history, which positions memory held (``before``,
        per unit) when the tokens at ``new`` were appended."""
        if self.record_history:
            self.history.append((new, before.clone()))

    def _shifted(self, rotary: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        """A chunk's rotary positions, its time moved back as far as compactions moved memory's."""
        if self.time_shift == 0:
            return rotary
        moving = time_rows(self.model, meta.modality, len(rotary))
        return rotary - self.time_shift * moving

    def _compact(self, rotary: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        """Compact memory's positions; return the chunk's, continuing right after them."""
        with torch.no_grad():
            compact(self.memory, self.model, self.origin)
        latest = int(rotary_positions(self.memory)[0].max())
        step = int(rotary[0].min()) - (latest + 1)  # the chunk's first time moves to latest + 1
        self.time_shift += step
        moved = rotary - step * time_rows(self.model, meta.modality, len(rotary))
        assert self.rotary_limit is not None
        if int(moved.max()) >= self.rotary_limit:
            raise OmniMemError(
                f"Even compacted, memory and one chunk span {int(moved.max()) + 1} rotary "
                f"positions, beyond the limit of {self.rotary_limit}; use a smaller budget."
            )
        return moved

    def _question_ids(self, question: str) -> torch.Tensor:
        return torch.tensor(self.prompts.question_ids(question), device=self.device)

    def compress_to(self) -> int:
        """Rows per layer a compression keeps: ``(1 - slack) · budget``, never below the prompt."""
        assert self.budget is not None
        return max(self.prefix_length, self.budget - int(self.slack * self.budget))

    def _clock(self) -> float:
        """Wall time, once the GPU (if any) has finished the work queued so far."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def stream(
        self, inputs: Stream, on_chunk: Callable[[MemoryReport], None] | None = None
    ) -> list[MemoryReport]:
        """Feed the whole clip, ``steps_per_chunk`` steps at a time."""
        for start in range(0, inputs.n_steps, self.steps_per_chunk):
            report = self.feed(
                inputs, range(start, min(start + self.steps_per_chunk, inputs.n_steps))
            )
            if on_chunk is not None:
                on_chunk(report)
        return self.reports

    @torch.no_grad()
    def answer(self, question: str, options: Sequence[str]) -> Answer:
        """Score each option by the logit of its answer token (its word, or its letter) after the
        question; memory is unchanged."""
        question_ids, answer_ids = self.prompts.choice_ids(question, options)
        ids = torch.tensor(question_ids, device=self.device)
        option_ids = torch.tensor(answer_ids)
        next_rotary = self.next_rotary
        asked_at = self.reports[-1].seconds if self.reports else 0.0  # the stream time now
        hidden_states = self._append(
            self.model.embed_text(ids, seconds=asked_at),
            _text_meta(len(ids), self.next_position, self.device),
            self.text_positions(ids, next_rotary),
        )
        self.memory.drop_last(len(ids))
        self.next_position -= len(ids)
        self.next_rotary = next_rotary
        logits = self.model.answer_logits(hidden_states[-1][0, -1]).cpu()[option_ids]
        probabilities = logits.softmax(-1)
        choice = options[int(probabilities.argmax())]
        return Answer(
            choice,
            dict(zip(options, probabilities.tolist(), strict=True)),
            dict(zip(options, logits.tolist(), strict=True)),
        )

    def replay_visibility(self) -> torch.Tensor:
        """(layers, T, T) booleans over the T tokens streamed so far: which token each token
        could see in each layer when it was processed.

        One forward pass over the whole sequence with these masks gives exactly the streaming
        session's hidden states (the basis of budget-aware fine-tuning, and a test).
        """
        if self.memory.head_wise:
            raise OmniMemError(
                "A head-wise memory keeps different tokens in each key/value head, which one mask "
                "per layer cannot replay; use the policy's layer-wise form."
            )
        if not self.record_history:
            raise OmniMemError(
                "This session kept no history to replay; create it with "
                "StreamingSession(..., record_history=True)."
            )
        n = self.next_position
        visible = torch.zeros(self.memory.n_layers, n, n, dtype=torch.bool, device=self.device)
        for new, before in self.history:
            for layer in range(self.memory.n_layers):
                visible[layer, new.unsqueeze(1), before[layer].unsqueeze(0)] = True
            visible[:, new.unsqueeze(1), new.unsqueeze(0)] = new.unsqueeze(1) >= new.unsqueeze(0)
        return visible


def _text_meta(n: int, first_position: int, device: torch.device) -> TokenMeta:
    return TokenMeta(
        modality=torch.full((n,), TEXT, device=device),
        seconds=torch.full((n,), -1.0, device=device),
        patch=torch.full((n,), -1, device=device),
        position=first_position + torch.arange(n, device=device),
    )
