"""Loading TinyOmni checkpoints, with one clear sentence when a folder is not a checkpoint.

The trained checkpoint ships inside the package (``omnimem_ref/checkpoints/tinyomni``), so
nothing is ever downloaded. A checkpoint folder holds ``config.json``, ``model.safetensors`` and
``tokenizer.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer
from transformers.utils import logging as hf_logging

from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import load_tokenizer

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "tinyomni"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def load_model(
    path: str | Path | None = None,
    adapter: str | Path | None = None,
    log_length_keys: int | None = None,
) -> tuple[TinyOmniModel, Tokenizer]:
    """The model and tokenizer in ``path`` (default: the shipped checkpoint), in eval mode,
    with the LoRA adapter in ``adapter`` applied if one is given (see ``model/adapter.py``),
    and log-length attention past ``log_length_keys`` keys if given (it overrides the
    checkpoint's own setting; see ``model/log_length_attention.py``)."""
    directory = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not directory.is_dir():
        hint = (
            "train one with `omnimem train-tiny --out DIR`"
            if path is None
            else "pass the folder `omnimem train-tiny --out` wrote"
        )
        raise OmniMemError(f"No checkpoint folder at {directory}; {hint}.")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise OmniMemError(
            f"{directory} is not a TinyOmni checkpoint (missing {', '.join(missing)}); "
            "pass the folder `omnimem train-tiny --out` wrote."
        )
    try:
        config = json.loads((directory / "config.json").read_text())
        if config.get("model_type") != "tinyomni":
            raise OmniMemError(
                f"{directory} holds a {config.get('model_type')!r} model, not TinyOmni; "
                "pass a folder written by `omnimem train-tiny`."
            )
        hf_logging.disable_progress_bar()  # a 1 MB model needs no loading bar
        model = TinyOmniModel.from_pretrained(directory)
        tokenizer = load_tokenizer(directory)
    except OmniMemError:
        raise
    except Exception as error:  # safetensors, json and torch each raise their own kinds
        raise OmniMemError(
            f"The checkpoint in {directory} is corrupt or incomplete ({type(error).__name__}); "
            "retrain it with `omnimem train-tiny` or restore the shipped one with git."
        ) from error
    if log_length_keys is not None:
        model.sharpen_attention_past(log_length_keys)
    if adapter is not None:
        from omnimem_ref.model.adapter import load_adapter  # peft loads slowly: only if asked

        model = load_adapter(model, adapter)
    return model.eval(), tokenizer


def trained_world(path: str | Path | None = None) -> str:
    """The world preset the checkpoint in ``path`` (default: the shipped one) was trained on.

    Read from ``training.json``, which ``train-tiny`` writes beside the weights; a checkpoint
    without one, or from before worlds had names, was trained on ``classic``. Fine-tuning draws
    its clips from this world unless told otherwise, so an adapter learns the base model's task.
    """
    directory = Path(path) if path is not None else DEFAULT_CHECKPOINT
    try:
        training = json.loads((directory / "training.json").read_text())
    except (OSError, ValueError):
        return "classic"
    return str(training.get("train_config", {}).get("world", "classic"))
