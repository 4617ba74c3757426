"""What compression costs next to the model's own prefill, at any model shape.

``omnimem bench`` measures cost on TinyOmni, where every tensor is tiny: one chunk's prefill and
one compression are both a few hundred small tensor operations, so the ratio mostly counts
operations (even ``vnorm``, which scores with one norm, costs about a tenth of a prefill there).
Here the same :class:`~omnimem_ref.streaming.session.StreamingSession` and policies run on a
randomly initialised TinyOmni of any shape, up to a Qwen2.5-Omni-sized decoder, fed random
encoder inputs: the weights and inputs are meaningless, the shapes and the work are real.

Timing: wall clock around each chunk's prefill and each compression (with the GPU synchronised
first, so asynchronous kernels are counted where they run); the first clip of each policy warms
up and is not counted. ``ratio = Σ compress / Σ prefill`` over every counted chunk, as in the
benchmark.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from tokenizers import Tokenizer

from omnimem_ref.budget import Budget
from omnimem_ref.features import FeatureSpec
from omnimem_ref.model.configuration import TinyOmniConfig, tiny_text_config
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import build_tokenizer, prompt_length
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import StreamingSession
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
# DESIGN.md §1's token rate: 1-second steps of 256 visual + 25 audio tokens (280 per second).
SHAPES = {
    "tiny": Shape(4, 128, 4, 2, 256, grid=4, audio_tokens=2, step_seconds=2.0),
    "small": Shape(8, 512, 8, 2, 1408, grid=8, audio_tokens=6, step_seconds=1.0),
    "qwen2.5-omni-3b": Shape(36, 2048, 16, 2, 11008, grid=16, audio_tokens=25, step_seconds=1.0),
    "qwen2.5-omni-7b": Shape(28, 3584, 28, 4, 18944, grid=16, audio_tokens=25, step_seconds=1.0),
}


@dataclass
class CostRecord:
    """One policy's times over the counted clips (the warm-up clip excluded)."""

    policy: str
    budget_tokens: int
    chunks: int
    compressions: int
    prefill_ms_per_chunk: float
    compress_ms_per_compression: float
    ratio: float  # Σ compress / Σ prefill


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


def measure_cost(
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    policies: list[str],
    budget: Budget,
    steps: int,
    clips: int = 2,
) -> list[CostRecord]:
    """Stream ``clips`` random clips of ``steps`` steps (plus one warm-up) under each policy."""
    spec = model.config.feature_spec
    dtype = next(model.parameters()).dtype
    full_tokens = prompt_length(tokenizer) + steps * (
        spec.visual_tokens_per_step + spec.audio_tokens_per_step
    )
    tokens = budget.resolve(full_tokens)
    records = []
    for name in policies:
        prefill = compress = 0.0
        chunks = compressions = 0
        for clip in range(clips + 1):
            inputs = random_stream(spec, steps, seed=clip, dtype=dtype)
            session = StreamingSession(model, tokenizer, make_policy(name), tokens)
            reports = session.stream(inputs)
            if clip == 0:
                continue  # warm-up
            prefill += sum(r.prefill_seconds for r in reports)
            compress += sum(r.compress_seconds for r in reports)
            chunks += len(reports)
            compressions += sum(r.compressed for r in reports)
        records.append(
            CostRecord(
                policy=name,
                budget_tokens=tokens,
                chunks=chunks,
                compressions=compressions,
                prefill_ms_per_chunk=1e3 * prefill / max(1, chunks),
                compress_ms_per_compression=1e3 * compress / max(1, compressions),
                ratio=compress / prefill if prefill else 0.0,
            )
        )
    return records


def cost_table(records: list[CostRecord]) -> str:
    """One line per policy: budget, prefill per chunk, one compression, and their ratio."""
    lines = [
        f"{'policy':24s} {'budget':>7s} {'prefill ms/chunk':>17s} "
        f"{'compress ms':>12s} {'compress/prefill':>17s}"
    ]
    for r in records:
        lines.append(
            f"{r.policy:24s} {r.budget_tokens:7d} {r.prefill_ms_per_chunk:17.2f} "
            f"{r.compress_ms_per_compression:12.2f} {r.ratio:16.1%}"
        )
    return "\n".join(lines)


def records_as_dicts(records: list[CostRecord]) -> list[dict]:
    """The records as plain dicts, for JSON."""
    return [asdict(r) for r in records]
