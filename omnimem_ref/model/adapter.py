"""LoRA adapters for TinyOmni: attach, save, and load them back onto the right base model.

An adapter folder is what peft's ``save_pretrained`` writes (``adapter_config.json``,
``adapter_model.safetensors``) plus ``omnimem_adapter.json``: the fingerprint of the base weights
it was trained on, how it was trained and its training log. Loading checks the fingerprint, so an
adapter is never silently applied to another model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model

from omnimem_ref.errors import OmniMemError
from omnimem_ref.files import replace_folder, sibling
from omnimem_ref.model.modeling import TinyOmniModel

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
ADAPTER_INFO = "omnimem_adapter.json"
DEFAULT_ADAPTER = Path(__file__).resolve().parent.parent / "checkpoints" / "tinyomni-omnimem-lora"


def lora_config(rank: int, alpha: int, targets: tuple[str, ...] = LORA_TARGETS) -> LoraConfig:
    """LoRA on the backbone's attention projections: W x + (alpha / rank) B A x."""
    return LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets), bias="none"
    )


def attach_lora(model: TinyOmniModel, lora: LoraConfig) -> PeftModel:
    """Wrap ``model`` with fresh LoRA adapters (B = 0, so outputs start unchanged).

    peft injects the adapters into ``model``'s own modules, so ``model`` itself (what streaming
    sessions and policies use) runs with them; the returned wrapper saves them and can switch
    them off (``disable_adapter``) to get the base model back for distillation.
    """
    with _quiet_peft():
        return get_peft_model(model, lora)


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft asks transformers a deprecated question (a FutureWarning that is not ours to fix)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def model_fingerprint(model: TinyOmniModel) -> str:
    """sha256 of the base weights (adapters excluded): which model an adapter was trained on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name:
            continue
        name = name.replace("base_model.model.", "").replace(".base_layer", "")
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_adapter(peft_model: PeftModel, out_dir: str | Path, info: dict) -> None:
    """peft's ``save_pretrained`` into a temporary folder, then swapped in: never half-written."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(out_dir, ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for config in peft_model.peft_config.values():  # a folder name, not this machine's path
        config.base_model_name_or_path = Path(str(config.base_model_name_or_path)).name
    peft_model.save_pretrained(str(tmp), save_embedding_layers=False)  # only LoRA weights
    (tmp / ADAPTER_INFO).write_text(json.dumps(info, indent=1))
    replace_folder(tmp, out_dir)


def load_adapter(model: TinyOmniModel, adapter_dir: str | Path) -> TinyOmniModel:
    """``model`` with the adapter in ``adapter_dir`` applied; one clear sentence if it cannot be.

    The adapter's layers are injected into ``model`` in place (peft), so the returned object is
    the same TinyOmni, ready for streaming sessions, policies and evaluation.
    """
    directory = Path(adapter_dir)
    hint = "pass a folder written by `omnimem finetune --out`"
    if not directory.is_dir():
        raise OmniMemError(f"No adapter folder at {directory}; {hint}.")
    missing = [
        name
        for name in ("adapter_config.json", "adapter_model.safetensors", ADAPTER_INFO)
        if not (directory / name).is_file()
    ]
    if missing:
        raise OmniMemError(
            f"{directory} is not an OmniMem adapter (missing {', '.join(missing)}); {hint}."
        )
    try:
        info = json.loads((directory / ADAPTER_INFO).read_text())
    except (OSError, ValueError) as error:
        raise OmniMemError(f"The adapter in {directory} is corrupt ({error}); {hint}.") from error
    if info.get("base_model") != model_fingerprint(model):
        raise OmniMemError(
            f"The adapter in {directory} was trained for another base model, not this "
            "checkpoint; fine-tune one for it with `omnimem finetune`."
        )
    try:
        with _quiet_peft():
            PeftModel.from_pretrained(model, directory, is_trainable=False)
    except Exception as error:  # safetensors, json and peft each raise their own kinds
        raise OmniMemError(
            f"The adapter in {directory} is corrupt or incomplete ({type(error).__name__}); "
            "fine-tune it again with `omnimem finetune`."
        ) from error
    return model.eval()
