"""What compression costs next to the model's own prefill, at any model shape and memory size.

``omnimem bench`` measures cost on TinyOmni, where every tensor is tiny: one chunk's prefill and
one compression are both a few hundred small tensor operations, so the ratio mostly counts
operations (even ``vnorm``, which scores with one norm, costs about a tenth of a prefill there).
Here the same :class:`~omnimem_ref.streaming.session.StreamingSession` and policies run on a
randomly initialised TinyOmni of any shape, up to a Qwen2.5-Omni-sized decoder, fed random
encoder inputs: the weights and inputs are meaningless, the shapes and the work are real.

A sweep runs several budgets. A budget in tokens gets a stream just long enough to fill memory
and then compress ``compressions`` times (:func:`plan_budget`), so every budget is measured on
the same number of compressions however large it is; a fraction of the stream keeps the old
behaviour (a ``steps``-long stream, 20 steps unless told).

Timing: wall clock around each chunk's prefill and each compression (with the GPU synchronised
first, so asynchronous kernels are counted where they run). Each policy first streams one short
warm-up clip at the smallest budget, which is not counted: it pays the first-call costs (memory
allocation, kernel selection) without paying for a whole clip at the largest budget. Two ratios:

- ``compress_per_prefill``: one compression against one *steady-state* prefill, i.e. the prefill
  of a chunk that found memory full and triggered a compression. Both then work on about
  ``budget`` tokens, so this is the per-chunk price of compressing at that memory size.
- ``ratio`` (amortised): ``Σ compress / Σ prefill`` over every counted chunk, filling ones
  included, as in the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tokenizers import Tokenizer

from omnimem_ref.budget import Budget
from omnimem_ref.features import FeatureSpec, stream_tokens
from omnimem_ref.model.configuration import TinyOmniConfig, tiny_text_config
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import MemoryReport, StreamingSession
from omnimem_ref.streaming.stream import StreamInputs


@dataclass(frozen=True)
class Shape:
    """A decoder shape and a token rate: what a compression's cost depends on."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    grid: int  # grid x grid visual tokens per step
    audio_tokens: int  # audio tokens per step
    step_seconds: float

    @property
    def tokens_per_step(self) -> int:
        return self.grid * self.grid + self.audio_tokens


# ``tiny``: the shipped TinyOmni. The Qwen2.5-Omni shapes are their thinkers' text decoders with
# docs/design.md §1's token rate: 1-second steps of 256 visual + 25 audio tokens (280 per second).
SHAPES = {
    "tiny": Shape(4, 128, 4, 2, 256, grid=4, audio_tokens=2, step_seconds=2.0),
    "small": Shape(8, 512, 8, 2, 1408, grid=8, audio_tokens=6, step_seconds=1.0),
    "qwen2.5-omni-3b": Shape(36, 2048, 16, 2, 11008, grid=16, audio_tokens=25, step_seconds=1.0),
    "qwen2.5-omni-7b": Shape(28, 3584, 28, 4, 18944, grid=16, audio_tokens=25, step_seconds=1.0),
}


# Steps per clip for a budget given as a fraction of the stream, when no step count is given.
DEFAULT_STEPS = 20
# Compressions in the warm-up clip: enough to run every code path of a policy once or twice.
WARMUP_COMPRESSIONS = 2


@dataclass
class CostRecord:
    """One policy at one budget: its times over the counted clips (the warm-up excluded)."""

    policy: str
    budget: str  # as given: tokens ("512") or a fraction of the stream ("0.1")
    budget_tokens: int
    steps: int  # per clip
    chunks: int
    compressions: int
    prefill_ms_per_chunk: float  # over every chunk
    steady_prefill_ms_per_chunk: float  # over the chunks that compressed (memory full)
    compress_ms_per_compression: float
    compress_per_prefill: float  # Σ compress / Σ steady-state prefill: one chunk's price
    ratio: float  # Σ compress / Σ prefill over every chunk: the amortised price


@dataclass(frozen=True)
class BudgetPlan:
    """One budget of a sweep, resolved: the tokens it keeps and the steps of each clip."""

    budget: Budget
    tokens: int
    steps: int


def fill_steps(budget_tokens: int, prompt: int, tokens_per_step: int) -> int:
    """Steps that fit in memory without compressing. Memory after step ``n`` holds
    ``prompt + n * tokens_per_step`` tokens, and a step compresses when that exceeds the
    budget, so the first compressing step is the one after these."""
    return max(0, (budget_tokens - prompt) // tokens_per_step)


def steps_per_compression(budget_tokens: int, tokens_per_step: int, slack: float = 0.0) -> int:
    """Steps between compressions once memory is full. Without slack every step compresses
    (memory is cut back to the budget, and the next step overflows it); with slack, memory is
    cut to ``(1 - slack) x budget`` and the next ``slack x budget`` tokens fit without
    compressing (up to how the session rounds that)."""
    return 1 + int(slack * budget_tokens) // tokens_per_step


def plan_budget(
    budget: Budget,
    prompt: int,
    tokens_per_step: int,
    steps: int | None = None,
    compressions: int = 8,
    slack: float = 0.0,
) -> BudgetPlan:
    """Resolve ``budget`` and choose the clip length: ``steps`` if given; for a budget in
    tokens, enough steps to fill memory and then compress ``compressions`` times; for a
    fraction (which needs the stream's length to mean anything), :data:`DEFAULT_STEPS`."""
    if steps is None and budget.tokens is not None:
        cycle = steps_per_compression(budget.tokens, tokens_per_step, slack)
        steps = fill_steps(budget.tokens, prompt, tokens_per_step) + compressions * cycle
    elif steps is None:
        steps = DEFAULT_STEPS
    return BudgetPlan(budget, budget.resolve(stream_tokens(prompt, steps, tokens_per_step)), steps)


def random_model(
    shape: Shape, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[TinyOmniModel, Tokenizer]:
    """A TinyOmni of ``shape`` with random weights (nothing is downloaded), in eval mode."""
    tokenizer = build_tokenizer()
    default = FeatureSpec()
    samples_per_token = shape.step_seconds * default.sample_rate / shape.audio_tokens
    spec = FeatureSpec(
        step_seconds=shape.step_seconds,
        grid=shape.grid,
        audio_tokens_per_step=shape.audio_tokens,
        # the default hop (0.1 s), or 4 mel frames per token where tokens are shorter than that
        hop_length=(
            default.hop_length
            if samples_per_token >= default.hop_length
            else int(samples_per_token // 4)
        ),
    )
    text = tiny_text_config(
        tokenizer.get_vocab_size(),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=1 << 20,
    )
    config = TinyOmniConfig(text_config=text, features=spec.to_dict(), max_seconds=1e6)
    with torch.device(device):
        model = TinyOmniModel(config)
    model.to(dtype=dtype)  # type: ignore[call-arg]  # transformers' typed `to` omits dtype=
    return model.eval(), tokenizer


def random_stream(
    spec: FeatureSpec, steps: int, seed: int, dtype: torch.dtype = torch.float32
) -> StreamInputs:
    """Encoder inputs of the right shapes for ``steps`` steps, drawn at random."""
    g = torch.Generator().manual_seed(seed)
    patches = torch.rand(steps, spec.visual_tokens_per_step, spec.patch_dim, generator=g)
    audio = torch.randn(steps, spec.audio_tokens_per_step, spec.audio_dim, generator=g)
    return StreamInputs(patches.to(dtype), audio.to(dtype), spec)


# streams(steps, seed) -> a random clip of ``steps`` steps, as the model being measured reads it.
RandomStreams = Callable[[int, int], Any]


def tinyomni_streams(model: TinyOmniModel) -> RandomStreams:
    """Random encoder inputs for a TinyOmni of any shape (:func:`random_stream`)."""
    dtype = next(model.parameters()).dtype
    return lambda steps, seed: random_stream(model.config.feature_spec, steps, seed, dtype)


def measure_cost(
    model: Any,
    tokenizer: Any,
    policies: list[str],
    budgets: Budget | Sequence[Budget],
    steps: int | None = None,
    clips: int = 1,
    compressions: int = 8,
    slack: float = 0.0,
    on_record: Callable[[CostRecord], None] | None = None,
    streams: RandomStreams | None = None,
) -> list[CostRecord]:
    """Stream ``clips`` random clips under each policy at each budget (one budget, or a sweep),
    after one short warm-up clip per policy; one record per policy x budget, policy by policy.

    ``steps``, ``compressions`` and ``slack``: see :func:`plan_budget`. ``on_record`` is called as
    each record is done (long sweeps report progress through it). ``streams`` makes the random
    clips: TinyOmni's random encoder inputs by default; any streaming model with its own (e.g.
    Qwen2.5-Omni's thinker with random frames, ``omnimem_ref.model.qwen_omni.shapes``).
    """
    streams = streams or tinyomni_streams(model)
    prompt = len(model.prompt_format(tokenizer).prompt_ids())
    per_step = streams(1, 0).tokens_per_step
    sweep = [budgets] if isinstance(budgets, Budget) else list(budgets)
    plans = [plan_budget(b, prompt, per_step, steps, compressions, slack) for b in sweep]
    smallest = Budget(tokens=min(plan.tokens for plan in plans))
    warmup = plan_budget(smallest, prompt, per_step, None, WARMUP_COMPRESSIONS, slack)
    records = []
    for name in policies:
        stream_clip(model, tokenizer, name, warmup, streams(warmup.steps, 0), slack)  # uncounted
        for plan in plans:
            reports = [
                report
                for seed in range(1, clips + 1)
                for report in stream_clip(
                    model, tokenizer, name, plan, streams(plan.steps, seed), slack
                )
            ]
            records.append(summarise(name, plan, reports))
            if on_record is not None:
                on_record(records[-1])
    return records


def stream_clip(
    model: Any, tokenizer: Any, policy: str, plan: BudgetPlan, inputs: Any, slack: float = 0.0
) -> list[MemoryReport]:
    """One clip (``inputs``, ``plan.steps`` steps) through a fresh session; its per-chunk
    reports."""
    session = StreamingSession(model, tokenizer, make_policy(policy), plan.tokens, slack=slack)
    return session.stream(inputs)


def summarise(policy: str, plan: BudgetPlan, reports: list[MemoryReport]) -> CostRecord:
    """Per-chunk and per-compression times, and both ratios (see the module docstring).

    Steady-state prefill is averaged over the chunks that compressed only: a filling chunk
    attends to a memory still smaller than the budget, so it would make the prefill look
    cheaper than it is once the stream runs at the budget."""
    steady = [r for r in reports if r.compressed]
    prefill = sum(r.prefill_seconds for r in reports)
    steady_prefill = sum(r.prefill_seconds for r in steady)
    compress = sum(r.compress_seconds for r in steady)
    return CostRecord(
        policy=policy,
        budget=str(plan.budget),
        budget_tokens=plan.tokens,
        steps=plan.steps,
        chunks=len(reports),
        compressions=len(steady),
        prefill_ms_per_chunk=1e3 * prefill / max(1, len(reports)),
        steady_prefill_ms_per_chunk=1e3 * steady_prefill / max(1, len(steady)),
        compress_ms_per_compression=1e3 * compress / max(1, len(steady)),
        compress_per_prefill=compress / steady_prefill if steady_prefill else 0.0,
        ratio=compress / prefill if prefill else 0.0,
    )


def cost_table(records: list[CostRecord]) -> str:
    """One line per policy x budget: steady-state prefill per chunk, one compression, their
    ratio (one chunk's price), and the amortised ratio over every chunk."""
    lines = [
        f"{'policy':24s} {'budget':>7s} {'steps':>5s} {'compr.':>6s} {'prefill ms':>10s} "
        f"{'compress ms':>11s} {'compress/prefill':>16s} {'amortised':>9s}"
    ]
    for r in records:
        lines.append(
            f"{r.policy:24s} {r.budget_tokens:7d} {r.steps:5d} {r.compressions:6d} "
            f"{r.steady_prefill_ms_per_chunk:10.2f} {r.compress_ms_per_compression:11.2f} "
            f"{r.compress_per_prefill:16.1%} {r.ratio:9.1%}"
        )
    return "\n".join(lines)


def growth_lines(records: list[CostRecord]) -> list[str]:
    """Per policy, how its times grow from the smallest budget to the largest: a compression
    that grows like the memory (or faster) is what makes large budgets expensive."""
    lines = []
    for policy in dict.fromkeys(r.policy for r in records):
        rows = [r for r in records if r.policy == policy]
        small = min(rows, key=lambda r: r.budget_tokens)
        large = max(rows, key=lambda r: r.budget_tokens)
        if large.budget_tokens == small.budget_tokens:
            continue
        compress = _times(large.compress_ms_per_compression, small.compress_ms_per_compression)
        prefill = _times(large.steady_prefill_ms_per_chunk, small.steady_prefill_ms_per_chunk)
        memory = large.budget_tokens / small.budget_tokens
        lines.append(
            f"{policy}: compression {compress}, steady prefill {prefill} for ×{memory:.3g} "
            f"memory ({small.budget_tokens} → {large.budget_tokens} tokens)"
        )
    return lines


def _times(large: float, small: float) -> str:
    """``"×3.2"``, or ``"×?"`` where the small budget measured nothing (no compression)."""
    return f"×{large / small:.3g}" if small > 0 else "×?"


def records_as_dicts(records: list[CostRecord]) -> list[dict]:
    """The records as plain dicts, for JSON."""
    return [asdict(r) for r in records]
