"""Subcommands of the ``omnimem`` command line, one module each (see :mod:`omnimem_ref.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from omnimem_ref.errors import OmniMemError


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1: TinyOmni's matrices are too small to gain from "
        "more, and on a busy machine extra threads spin and slow every step many times over)",
    )


def require_at_least_one(args: argparse.Namespace, *options: str) -> None:
    """Refuse any of ``options`` (e.g. ``"--steps"``) given below 1, in one sentence; an option
    left out (``None``) is fine."""
    for option in options:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None and value < 1:
            raise OmniMemError(f"{option} must be at least 1, got {value}.")


def apply_threads(args: argparse.Namespace) -> None:
    """Refuse a bad --threads, then set torch's intra-op threads (torch is imported late)."""
    require_at_least_one(args, "--threads")
    import torch

    torch.set_num_threads(args.threads)


def check_device(device: str) -> None:
    """Refuse a device torch does not know, or ``cuda`` where torch sees no GPU, in one
    sentence."""
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise OmniMemError(
            f"--device {device!r} is not a device PyTorch knows; use cpu or cuda."
        ) from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OmniMemError("--device cuda was asked for but PyTorch sees no GPU; use --device cpu.")


def add_log_length_argument(parser: argparse.ArgumentParser) -> None:
    """``--log-length-keys N``: TinyOmni with log-length attention past N keys, without editing
    the checkpoint's config.json (``model/log_length_attention.py``)."""
    parser.add_argument(
        "--log-length-keys",
        type=int,
        metavar="N",
        help="sharpen TinyOmni's attention for queries that see more than N keys (N: the most "
        "keys a query saw in training; 1105 for the hard-world checkpoints); default: the "
        "checkpoint's own setting, off in every shipped one",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device`` and ``--dtype``: which model streams, where, in what precision."""
    parser.add_argument(
        "--model",
        help="a local Qwen2.5-Omni thinker folder (save_pretrained + tokenizer files) to stream "
        "through instead of TinyOmni; nothing is downloaded",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "bfloat16", "float16"),
        help="weights of --model (default: bfloat16 on cuda, float32 on cpu)",
    )


def load_streaming_model(args: argparse.Namespace) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The model ``--model`` (a Qwen2.5-Omni thinker folder) or ``--checkpoint``/``--adapter``
    (TinyOmni) name, on ``--device``: (model, tokenizer, clip reader ``read(model, path)``, the
    settings a results file records of the model). The same session drives either model."""
    log_length_keys = getattr(args, "log_length_keys", None)  # eval has it; demo does not
    if args.model is not None:
        if args.checkpoint or args.adapter or log_length_keys:
            raise OmniMemError(
                "--checkpoint, --adapter and --log-length-keys are TinyOmni's; leave them out "
                "with --model."
            )
        from omnimem_ref.model.qwen_omni.loading import load_thinker, read_thinker_stream

        dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
        thinker = load_thinker(args.model, args.device, dtype)
        settings = {"model": str(Path(args.model).resolve()), "dtype": dtype}
        return thinker, thinker.tokenizer, read_thinker_stream, settings
    if args.dtype is not None:
        raise OmniMemError("--dtype applies to --model; TinyOmni runs in float32.")
    from omnimem_ref.evaluation import read_stream
    from omnimem_ref.model.checkpoint import load_model

    tiny, tokenizer = load_model(args.checkpoint, args.adapter, log_length_keys)
    checkpoint = str(Path(args.checkpoint).resolve()) if args.checkpoint else "shipped TinyOmni"
    settings = {
        "model": checkpoint,
        "adapter": args.adapter,
        "log_length_keys": tiny.config.log_length_keys,
    }
    return tiny.to(args.device), tokenizer, read_stream, settings
