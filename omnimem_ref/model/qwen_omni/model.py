"""Qwen2.5-Omni's thinker as a streaming model: transformers' own classes behind the session.

:class:`QwenOmniThinker` wraps a stock ``Qwen2_5OmniThinkerForConditionalGeneration`` (no code of
it copied) and supplies what the session asks of any model (``omnimem_ref.core``, the boundary):

- the decoder stack whose cache is compressed (``backbone``: the thinker's text model);
- text in (:class:`ThinkerPrompts`: the chat template around the stream and the question) and
  answers out (``answer_logits``: the thinker's LM head; multiple choice by the option letters);
- rotary positions of text (``text_positions``: TMRoPE, three rows);
- the encoders a :class:`~omnimem_ref.model.qwen_omni.inputs.ThinkerStream` calls for each chunk
  (``encode_video``, ``encode_audio``: the thinker's own ``get_video_features`` and
  ``get_audio_features``).

Policies read ``backbone.layers[l].self_attn`` (q/o projections, head counts) and
``backbone.rotary_emb``, exactly as on TinyOmni's Qwen2: the thinker's rotary embedding itself
splits the frequencies into the time, height and width sections, so a policy that rotates a
query or undoes a key's rotation only needs the three rows memory keeps for every token.

Attention: sdpa or eager. Flash-attention reads a mask as 2D padding, but streaming needs the
explicit 4D masks of ``omnimem_ref.masks``; :func:`~omnimem_ref.model.qwen_omni.loading.load_thinker`
never asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from omnimem_ref.core import VISUAL, PromptFormat
from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.qwen_omni.inputs import VisionSettings
from omnimem_ref.model.qwen_omni.positions import text_positions

SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
    "perceiving auditory and visual inputs, as well as generating text and speech."
)
INSTRUCTION = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCDEFGHIJ"

# The special tokens of the chat template around a video with its audio track.
VISION_BOS, VISION_EOS = "<|vision_bos|>", "<|vision_eos|>"
AUDIO_BOS, AUDIO_EOS = "<|audio_bos|>", "<|audio_eos|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (IM_START, IM_END, VISION_BOS, VISION_EOS, AUDIO_BOS, AUDIO_EOS)


class ThinkerPrompts(PromptFormat):
    """Qwen2.5-Omni's chat template, cut where the stream goes in.

    Prompt prefix: ``<|im_start|>system\\n… <|im_end|>\\n<|im_start|>user\\n<|vision_bos|><|audio_bos|>``;
    a question: ``<|audio_eos|><|vision_eos|>`` + the question and its lettered options +
    ``<|im_end|>\\n<|im_start|>assistant\\n``; the answer is read from the next token's logits.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            raise OmniMemError(
                f"The tokenizer has no {', '.join(missing)} token; use Qwen2.5-Omni's tokenizer."
            )

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self) -> list[int]:
        return self._encode(
            f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n{IM_START}user\n{VISION_BOS}{AUDIO_BOS}"
        )

    def question_ids(self, question: str) -> list[int]:
        return self._encode(f"{AUDIO_EOS}{VISION_EOS}{question}{IM_END}\n{IM_START}assistant\n")

    def option_id(self, option: str) -> int:
        ids = self._encode(option)
        if len(ids) != 1:
            raise OmniMemError(f"The answer {option!r} is not one token for this tokenizer.")
        return ids[0]

    def choice_ids(self, question: str, options: Sequence[str]) -> tuple[list[int], list[int]]:
        """The question with its options lettered A, B, …; each option is answered by its letter."""
        if len(options) > len(LETTERS):
            raise OmniMemError(f"At most {len(LETTERS)} options can be lettered.")
        lines = [f"{letter}. {option}" for letter, option in zip(LETTERS, options, strict=False)]
        text = "\n".join([question, *lines, INSTRUCTION])
        return self.question_ids(text), [
            self.option_id(letter) for letter in LETTERS[: len(options)]
        ]


class QwenOmniThinker(nn.Module):
    """A ``Qwen2_5OmniThinkerForConditionalGeneration`` behind the streaming session."""

    def __init__(
        self,
        thinker: Any,
        tokenizer: PreTrainedTokenizerBase,
        vision: VisionSettings | None = None,
    ) -> None:
        super().__init__()
        self.thinker = thinker
        self.tokenizer = tokenizer
        self.vision = vision or VisionSettings()  # how clip frames are resized and cut
        vocab = tokenizer.get_vocab()
        # Tokens that share the position of the token before them (positions.text_positions).
        self.shared_position_ids = tuple(vocab[t] for t in (AUDIO_BOS, VISION_EOS) if t in vocab)

    @property
    def config(self) -> Any:
        """The thinker's config (``.text_config`` describes the decoder)."""
        return self.thinker.config

    @property
    def device(self) -> torch.device:
        return next(self.thinker.parameters()).device

    @property
    def backbone(self) -> Any:  # Qwen2_5OmniThinkerTextModel
        """The decoder stack whose KV cache is compressed: the thinker's text model."""
        return self.thinker.model.language_model

    def prompt_format(self, tokenizer: PreTrainedTokenizerBase) -> ThinkerPrompts:
        return ThinkerPrompts(tokenizer)

    def embed_text(self, ids: torch.Tensor, seconds: float | None = None) -> torch.Tensor:
        """Word embeddings; ``seconds`` (when text is asked) is not needed: TMRoPE's time row
        already places text after the stream."""
        return self.backbone.get_input_embeddings()(ids.to(self.device))

    def text_positions(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """(3, n) TMRoPE positions of text from ``start`` (the paired markers share one)."""
        return text_positions(ids, start, self.shared_position_ids)

    def time_rows(self, modality: torch.Tensor) -> torch.Tensor:
        """(3, *shape): which rotary rows carry a token's time: all three for text and audio,
        only the first for video (its height and width rows are its grid cell). Compaction moves
        only these (``omnimem_ref.streaming.compaction``)."""
        rows = torch.ones(3, *modality.shape, dtype=torch.bool, device=modality.device)
        rows[1:] = modality != VISUAL
        return rows

    def answer_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.thinker.lm_head(hidden)

    def encode_video(self, pixels: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(pairs, patches, patch_dim) packed frame pairs -> (pairs · cells, hidden) video tokens.
        Each frame pair is encoded on its own inside the vision encoder (its attention never
        crosses pairs), so encoding a chunk's pairs equals encoding the whole clip."""
        rows, cols = grid
        grid_thw = torch.tensor([[len(pixels), rows, cols]], device=self.device)
        values = pixels.flatten(0, 1).to(self.device, self.thinker.model.visual.dtype)
        features = self.thinker.model.get_video_features(
            pixel_values_videos=values, video_grid_thw=grid_thw, return_dict=True
        ).pooler_output
        return torch.cat(features).to(self.backbone.get_input_embeddings().weight.dtype)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(bins, frames) log-mel, frames a multiple of 200 -> (frames / 8, hidden) audio tokens
        (the encoder works in 200-frame windows, so a slice encodes as inside the whole clip)."""
        features = mel.unsqueeze(0).to(self.device, self.thinker.model.audio_tower.dtype)
        mask = torch.ones(1, mel.shape[1], dtype=torch.long, device=self.device)
        tokens = self.thinker.model.get_audio_features(
            features, feature_attention_mask=mask, return_dict=True
        ).last_hidden_state
        return tokens.to(self.backbone.get_input_embeddings().weight.dtype)
