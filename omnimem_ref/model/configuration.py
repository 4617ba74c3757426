"""TinyOmni's configuration: a stock Qwen2 text config plus the audio-visual front end."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, Qwen2Config

from omnimem_ref.features import FeatureSpec


class TinyOmniConfig(PretrainedConfig):
    """Configuration of :class:`~omnimem_ref.model.modeling.TinyOmniModel`.

    ``text_config`` is an ordinary :class:`~transformers.Qwen2Config`, so the language backbone is
    transformers' own ``Qwen2ForCausalLM`` with its real KV cache. ``features`` is the
    :class:`~omnimem_ref.features.FeatureSpec` the model was trained with.
    """

    model_type = "tinyomni"
    sub_configs = {"text_config": Qwen2Config}

    def __init__(
        self,
        text_config: Qwen2Config | dict[str, Any] | None = None,
        features: dict[str, Any] | None = None,
        max_seconds: float = 120.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(text_config, dict):
            text_config = Qwen2Config(**text_config)
        self.text_config = text_config or Qwen2Config()
        self.features = features or FeatureSpec().to_dict()
        self.max_seconds = max_seconds  # longest clip duration seen in training
        super().__init__(**kwargs)

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(**self.features)


def tiny_text_config(vocab_size: int, **overrides: Any) -> Qwen2Config:
    """The default backbone: 4 layers, 128 wide, grouped-query attention like Qwen2.5."""
    settings: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=2,
    )
    settings.update(overrides)
    return Qwen2Config(**settings)
