"""A tiny random Qwen2.5-Omni thinker and its tokenizer, built locally from transformers' own
classes (no download), and the stock thinker's whole-clip inputs to check streaming against.

The tests (``tests/test_qwen_omni.py``) and notebook 06 use these; so can anyone who wants to try
the thinker's streaming code on CPU without Qwen2.5-Omni's weights. The weights are random, so
answers are meaningless; shapes, positions, masks and memory are the real thinker's.

- :func:`tiny_tokenizer`: word-level, holding the chat template's special tokens, the video,
  audio and image placeholders, the letters A-J and a few words;
- :func:`tiny_thinker`: a 2-layer ``Qwen2_5OmniThinkerForConditionalGeneration`` with one-layer
  vision and audio encoders (about 59k parameters), configured by :func:`thinker_config`, which
  :mod:`.shapes` uses too;
- :func:`whole_clip_inputs` and :func:`whole_clip_positions`: what the Qwen2.5-Omni processor
  would write for [prompt | clip with its audio track | question], and the TMRoPE positions
  transformers' ``get_rope_index`` gives them: what the streamed positions must equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Punctuation, WhitespaceSplit
from tokenizers.pre_tokenizers import Sequence as PreTokenizers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
)

from omnimem_ref.model.qwen_omni.inputs import ThinkerSteps
from omnimem_ref.model.qwen_omni.model import (
    AUDIO_BOS,
    AUDIO_EOS,
    SPECIAL_TOKENS,
    VISION_BOS,
    QwenOmniThinker,
)

VIDEO, AUDIO, IMAGE = "<|VIDEO|>", "<|AUDIO|>", "<|IMAGE|>"
PLACEHOLDERS = (VIDEO, AUDIO, IMAGE)  # where the processor puts video, audio and image tokens
WORDS = (
    "system", "user", "assistant", "you", "are", "qwen", "what", "shape", "was", "the", "red",
    "object", "answer", "with",
)  # fmt: skip
# One-layer vision and audio encoders (their output width follows the decoder's: thinker_config).
TINY_VISION = dict(
    depth=1, hidden_size=16, intermediate_size=32, num_heads=2, fullatt_block_indexes=[0]
)
TINY_AUDIO = dict(encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16)


def tiny_tokenizer(words: Sequence[str] = WORDS) -> PreTrainedTokenizerFast:
    """A word-level tokenizer holding the chat template's special tokens and the letters A-J
    (any other word is ``[UNK]``, one token, so the prompt keeps its length in tokens)."""
    vocab = ["[UNK]", *SPECIAL_TOKENS, *PLACEHOLDERS, *"ABCDEFGHIJ", ".", "?", "'", *words]
    model = WordLevel({word: i for i, word in enumerate(dict.fromkeys(vocab))}, unk_token="[UNK]")
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = PreTokenizers([WhitespaceSplit(), Punctuation()])
    tokenizer.add_special_tokens([*SPECIAL_TOKENS, *PLACEHOLDERS])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")


def special_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    """The thinker config's placeholder and marker ids, read from ``tokenizer``."""

    def token(name: str) -> int:
        found = tokenizer.convert_tokens_to_ids(name)
        assert isinstance(found, int)
        return found

    return dict(
        video_token_index=token(VIDEO),
        audio_token_index=token(AUDIO),
        image_token_index=token(IMAGE),
        audio_start_token_id=token(AUDIO_BOS),
        audio_end_token_id=token(AUDIO_EOS),
        vision_start_token_id=token(VISION_BOS),  # not a declared field: get_rope_index needs it
    )


def tiny_thinker(
    tokenizer: PreTrainedTokenizerFast, attention: str = "sdpa", seed: int = 0
) -> Qwen2_5OmniThinkerForConditionalGeneration:
    """A 2-layer thinker (hidden 32, 4 query and 2 key/value heads, TMRoPE sections 1/1/2 of the
    4 frequencies) with one-layer vision and audio encoders; special ids from ``tokenizer``.

    Weights are drawn 5 times wider than the default (std 0.1): at std 0.02 attention is nearly
    uniform and a wrong position moves the logits by only ~2e-4, too close to the tests' 1e-4 bar.
    ``attention``: ``"sdpa"`` or ``"eager"`` (never flash-attention, which reads the session's 4D
    masks as padding).
    """
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=0.1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
    )
    config = thinker_config(
        tokenizer, text, TINY_VISION, TINY_AUDIO, attention, initializer_range=0.1
    )
    torch.manual_seed(seed)
    return Qwen2_5OmniThinkerForConditionalGeneration(config).eval()


def thinker_config(
    tokenizer: PreTrainedTokenizerFast,
    text: dict[str, Any],
    vision: dict[str, Any],
    audio: dict[str, Any],
    attention: str = "sdpa",
    **settings: Any,
) -> Qwen2_5OmniThinkerConfig:
    """A thinker's config: decoder ``text``, encoders ``vision`` and ``audio`` whose outputs are
    as wide as the decoder, special ids from ``tokenizer``, and ``attention`` (sdpa or eager, never
    flash-attention) in every part; ``settings``: further top-level fields."""
    config = Qwen2_5OmniThinkerConfig(
        text_config=text,
        vision_config={**vision, "out_hidden_size": text["hidden_size"]},
        audio_config={**audio, "output_dim": text["hidden_size"]},
        **special_token_ids(tokenizer),
        **settings,
    )
    parts: list[Any] = [config, config.text_config, config.vision_config, config.audio_config]
    for part in parts:
        part._attn_implementation = attention
    return config


def whole_clip_inputs(
    model: QwenOmniThinker, stream: ThinkerSteps, question_ids: Sequence[int]
) -> dict[str, Any]:
    """The stock thinker's inputs for [prompt | clip with its audio | question]: placeholder
    tokens for video and audio, 2-s step by 2-s step, exactly what the Qwen2.5-Omni processor
    would write (``use_audio_in_video``); ``thinker(**inputs)`` runs the whole clip at once.
    ``stream``: in memory or read from a file (then every step is read now)."""
    prompts = model.prompt_format(model.tokenizer)
    ids = model.tokenizer.convert_tokens_to_ids
    step = [ids(VIDEO)] * stream.visual_tokens_per_step
    step += [ids(AUDIO)] * stream.audio_tokens_per_step
    input_ids = torch.tensor([prompts.prompt_ids() + step * stream.n_steps + list(question_ids)])
    pixels, mel = stream.step_inputs(range(stream.n_steps))
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values_videos=pixels.flatten(0, 1),
        video_grid_thw=torch.tensor([[len(pixels), *stream.grid]]),
        input_features=mel.unsqueeze(0),
        feature_attention_mask=torch.ones(1, mel.shape[1], dtype=torch.long),
        use_audio_in_video=True,
        video_second_per_grid=torch.tensor([stream.seconds_per_pair]),
    )


def whole_clip_positions(thinker: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """(3, T) TMRoPE positions transformers' ``get_rope_index`` gives :func:`whole_clip_inputs`
    (``thinker``: a ``Qwen2_5OmniThinkerForConditionalGeneration``)."""
    positions, _ = thinker.model.get_rope_index(
        inputs["input_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        attention_mask=inputs["attention_mask"],
        use_audio_in_video=True,
        audio_seqlens=inputs["feature_attention_mask"].sum(-1),
        second_per_grids=inputs["video_second_per_grid"],
    )
    return positions[:, 0]
