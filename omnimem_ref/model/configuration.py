"""TinyOmni's configuration: a stock Qwen2 text config plus the audio-visual front end."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, Qwen2Config

from omnimem_ref.features import FeatureSpec

# The time features' periods in seconds before they were configurable (the shipped checkpoint's).
DEFAULT_TIME_PERIODS = (8.0, 32.0, 128.0)


class TinyOmniConfig(PretrainedConfig):
    """Configuration of :class:`~omnimem_ref.model.modeling.TinyOmniModel`.

    ``text_config`` is an ordinary :class:`~transformers.Qwen2Config`, so the language backbone is
    transformers' own ``Qwen2ForCausalLM`` with its real KV cache. ``features`` is the
    :class:`~omnimem_ref.features.FeatureSpec` the model was trained with.

    Every stream token gets an embedding of its time ``t`` in seconds, from the features
    :func:`~omnimem_ref.model.modeling.time_features` computes: ``sin`` and ``cos`` of
    ``2πt / P`` for each period ``P`` in ``time_periods``, after the linear ramp
    ``t / max_seconds`` if ``time_ramp``. The defaults are the features the shipped checkpoint
    was trained with, so a ``config.json`` written before these keys existed loads unchanged. A
    ramp grows without bound past ``max_seconds``; a model meant for streams of any length drops
    it and takes periods up to hours (``docs/training.md``).

    ``log_length_keys`` (``n₀``; off by default) scales the backbone's attention logits by
    ``log n / log n₀`` for a query that sees ``n`` keys, more than the ``n₀`` training showed
    (:mod:`omnimem_ref.model.log_length_attention`): a model trained on 2-minute clips stays as
    sharp on a 30-minute memory. It changes nothing on streams no longer than that.
    """

    model_type = "tinyomni"
    sub_configs = {"text_config": Qwen2Config}

    def __init__(
        self,
        text_config: Qwen2Config | dict[str, Any] | None = None,
        features: dict[str, Any] | None = None,
        max_seconds: float = 120.0,
        time_periods: list[float] | None = None,
        time_ramp: bool = True,
        time_log: bool = False,
        question_time: bool = False,
        frame_context: bool = False,
        log_length_keys: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(text_config, dict):
            text_config = Qwen2Config(**text_config)
        self.text_config = text_config or Qwen2Config()
        self.features = features or FeatureSpec().to_dict()
        self.max_seconds = max_seconds  # longest stream time seen in training
        self.time_periods = [float(p) for p in (time_periods or DEFAULT_TIME_PERIODS)]
        self.time_ramp = time_ramp
        self.time_log = time_log  # add log(1 + t) / log(1 + max_seconds): bounded, monotone
        self.question_time = question_time  # questions carry the time they are asked at
        self.frame_context = frame_context  # patch tokens see their neighbours (modeling.py)
        # attention sharpened past this many keys (model/log_length_attention.py); None: plain
        self.log_length_keys = log_length_keys
        super().__init__(**kwargs)

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(**self.features)

    @property
    def n_time_features(self) -> int:
        """Inputs of the time embedding: the ramp (if any), the log time (if any), then a sine and
        a cosine per period."""
        return int(self.time_ramp) + int(self.time_log) + 2 * len(self.time_periods)


def tiny_text_config(
    vocab_size: int, layers: int = 4, width: int = 128, **overrides: Any
) -> Qwen2Config:
    """A backbone ``layers`` deep and ``width`` wide, grouped-query attention like Qwen2.5: heads
    of 32 dimensions, two query heads per key/value head, an MLP twice as wide. The default,
    4 x 128, is the shipped TinyOmni's."""
    heads = width // 32
    settings: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=2,
    )
    settings.update(overrides)
    return Qwen2Config(**settings)
