"""TinyOmni: a small audio-visual LLM whose language backbone is a stock transformers Qwen2.

Each clip becomes a time-interleaved token stream, as in Qwen2.5-Omni: for each 2-second step,
the 16 patch tokens of one frame, then the 2 tokens of that step's audio. Encoders turn patches
and log-mel windows into vectors the size of the backbone's word embeddings; every stream token
also gets an embedding of its modality and of its time in seconds (so the model can tell
*when* something happened after memory has been compressed and positions have gaps). A patch
token sees only its own grid cell, unless the config's ``frame_context`` lets it also read the
cells around it (:class:`FrameContext`; off in the shipped checkpoint).

The small linear "probes" predict what each token shows (colour and shape of the object in a
patch; pitch, loudness and the on-screen colour for an audio token). They only train the model
(dense supervision makes a tiny model learn in minutes); answers never use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import PreTrainedModel, Qwen2ForCausalLM, Qwen2Model

from omnimem_ref.core import AUDIO, MODALITY_NAMES, TEXT, VISUAL
from omnimem_ref.model.configuration import DEFAULT_TIME_PERIODS, TinyOmniConfig
from omnimem_ref.model.log_length_attention import use_log_length_attention
from omnimem_ref.model.tokenizer import TinyOmniPrompts
from omnimem_ref.world.vocabulary import COLOURS, PITCHES, SHAPES

__all__ = ["AUDIO", "MODALITY_NAMES", "TEXT", "VISUAL", "TinyOmniModel"]

# Probe outputs: class 0 means "nothing here".
VISUAL_PROBE_CLASSES = {"colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1}
AUDIO_PROBE_CLASSES = {"pitch": len(PITCHES) + 1, "loudness": 3, "on_screen": len(COLOURS) + 1}


def time_features(
    seconds: torch.Tensor,
    max_seconds: float = 120.0,
    periods: Sequence[float] = DEFAULT_TIME_PERIODS,
    ramp: bool = True,
    log: bool = False,
) -> torch.Tensor:
    """(...,) seconds t -> (..., F): the ramp t / max_seconds (if ``ramp``), the log time
    log(1 + t) / log(1 + max_seconds) (if ``log``), then sin(2πt / P) for each period P, then
    cos(2πt / P) for each.

    The defaults are the shipped checkpoint's 7 features (ramp, periods 8, 32 and 128 s). The ramp
    leaves the range training saw as soon as t passes max_seconds (an hour at 120 s: 30); the
    sinusoids stay in [-1, 1] at any t, and a longest period above twice the longest stream tells
    every instant of it apart. The log time is monotone like the ramp but stays within [0, 1]
    up to max_seconds, and makes *where in the clip* a difference: t lies in the first third of a
    clip asked about at time T when log t - log T < log(1/3), a threshold the model can learn
    once for clips of every length (``docs/training.md``)."""
    t = seconds.float().unsqueeze(-1)
    angles = 2 * math.pi * t / torch.tensor(list(periods), device=t.device)
    parts = [t / max_seconds] if ramp else []
    parts += [torch.log1p(t.clamp(min=0)) / math.log1p(max_seconds)] if log else []
    return torch.cat([*parts, torch.sin(angles), torch.cos(angles)], dim=-1)


class TokenEncoder(nn.Module):
    """Flattened patch or log-mel window -> one token embedding (a two-layer MLP)."""

    def __init__(self, input_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(input_dim),
            nn.Linear(input_dim, hidden_size),
            nn.GELU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FrameContext(nn.Module):
    """Each patch token plus what a 3 x 3 convolution reads from the patches around it.

    Why: TinyOmni's patch encoder sees one grid cell, so an object wider than a cell (the hard
    world's) shows each token only part of its shape, and the backbone must piece the shape
    together from several tokens of a frame. A real audio-visual LLM's vision encoder (a ViT)
    lets every patch attend to the whole frame before its tokens reach the language model; one
    convolution over the grid is the smallest step towards that. It mixes the patches of one
    frame only, so a token still belongs to one frame and one cell (what compression keeps or
    drops).

    The convolution enters through a gate that starts at zero (Flamingo's gated cross-attention
    does the same), so a new model's tokens start out as they would without it, and training
    learns how much of the surroundings to let in.
    """

    def __init__(self, hidden_size: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.conv = nn.Conv2d(hidden_size, hidden_size, kernel_size=3, padding=1)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., grid * grid, hidden), patches row-major over the grid -> the same shape."""
        g, hidden = self.grid, tokens.shape[-1]
        frames = tokens.reshape(-1, g, g, hidden).permute(0, 3, 1, 2)  # (frames, hidden, g, g)
        around = self.conv(frames).permute(0, 2, 3, 1).reshape(tokens.shape)
        return tokens + self.gate * around


class TinyOmniModel(PreTrainedModel):
    """Audio-visual front end + ``Qwen2ForCausalLM``. See the module docstring."""

    config_class = TinyOmniConfig
    base_model_prefix = "tinyomni"
    _supports_sdpa = True

    def __init__(self, config: TinyOmniConfig) -> None:
        super().__init__(config)
        spec = config.feature_spec
        hidden = config.text_config.hidden_size
        self.language_model = Qwen2ForCausalLM(config.text_config)
        self.vision_encoder = TokenEncoder(spec.patch_dim, hidden)
        self.audio_encoder = TokenEncoder(spec.audio_dim, hidden)
        self.patch_embedding = nn.Embedding(spec.visual_tokens_per_step, hidden)
        # Checkpoints saved before ``frame_context`` existed load with it off (and unchanged).
        self.frame_context = FrameContext(hidden, spec.grid) if config.frame_context else None
        self.modality_embedding = nn.Embedding(3, hidden)
        self.time_embedding = nn.Linear(config.n_time_features, hidden)
        n_visual = sum(VISUAL_PROBE_CLASSES.values())
        n_audio = sum(AUDIO_PROBE_CLASSES.values())
        self.visual_probe = nn.ModuleDict(
            {"encoder": nn.Linear(hidden, n_visual), "backbone": nn.Linear(hidden, n_visual)}
        )
        self.audio_probe = nn.ModuleDict(
            {"encoder": nn.Linear(hidden, n_audio), "backbone": nn.Linear(hidden, n_audio)}
        )
        self.post_init()
        if config.log_length_keys is not None:
            self.sharpen_attention_past(config.log_length_keys)

    def sharpen_attention_past(self, trained_keys: int) -> None:
        """Switch on log-length attention (:mod:`omnimem_ref.model.log_length_attention`): a
        query that sees ``n > trained_keys`` keys has its logits scaled by ``log n / log
        trained_keys``. Recorded in the config, so it is saved with the model and a benchmark
        JSON can say the model ran with it."""
        use_log_length_attention(self.language_model.config, trained_keys)
        self.config.log_length_keys = int(trained_keys)

    @property
    def backbone(self) -> Qwen2Model:
        """The decoder stack whose KV cache is compressed."""
        return self.language_model.model

    def embed_text(self, token_ids: torch.Tensor, seconds: float | None = None) -> torch.Tensor:
        """Word embeddings of ``token_ids``; with ``config.question_time``, text asked at stream
        time ``seconds`` also carries that time (as stream tokens carry theirs), so a question
        knows how long the clip has been without looking for its last tokens."""
        words = self.language_model.get_input_embeddings()(token_ids)
        if seconds is None or not self.config.question_time:
            return words
        return words + self._time_embedding(torch.tensor(float(seconds), device=words.device))

    def _time_embedding(self, seconds: torch.Tensor) -> torch.Tensor:
        config = self.config
        features = time_features(
            seconds,
            config.max_seconds,
            config.time_periods,
            config.time_ramp,
            config.time_log,
        )
        return self.time_embedding(features.to(self.time_embedding.weight.dtype))

    def _stream_embedding(self, modality: int, seconds: torch.Tensor) -> torch.Tensor:
        kind = self.modality_embedding.weight[modality]
        return kind + self._time_embedding(seconds.to(kind.device))

    def encode_visual(self, patches: torch.Tensor, seconds: torch.Tensor) -> torch.Tensor:
        """(..., steps, P, patch_dim) patches at (..., steps) times -> (..., steps, P, hidden)."""
        tokens = self.vision_encoder(patches)
        if self.frame_context is not None:
            tokens = self.frame_context(tokens)
        tokens = tokens + self.patch_embedding.weight
        return tokens + self._stream_embedding(VISUAL, seconds).unsqueeze(-2)

    def encode_audio(self, windows: torch.Tensor, seconds: torch.Tensor) -> torch.Tensor:
        """(..., steps, A, audio_dim) windows at (..., steps, A) times -> (..., steps, A, hidden)."""
        return self.audio_encoder(windows) + self._stream_embedding(AUDIO, seconds)

    def interleave(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(..., steps, P, h) and (..., steps, A, h) -> (..., steps * (P + A), h), step by step."""
        both = torch.cat([visual, audio], dim=-2)
        return both.flatten(-3, -2)

    def answer_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states -> vocabulary logits (the tied LM head)."""
        return self.language_model.lm_head(hidden)

    def prompt_format(self, tokenizer: Tokenizer) -> TinyOmniPrompts:
        """How the streaming session writes the prompt and questions, and reads answers."""
        return TinyOmniPrompts(tokenizer)
