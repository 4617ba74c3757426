"""Subcommands of the ``omnimem`` command line, one module each (see :mod:`omnimem_ref.cli`)."""

from __future__ import annotations

import argparse

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
    """Refuse ``cuda`` on a machine where torch sees no GPU, in one sentence."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OmniMemError("--device cuda was asked for but PyTorch sees no GPU; use --device cpu.")
