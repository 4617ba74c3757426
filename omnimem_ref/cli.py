"""The ``omnimem`` command line: one subcommand per module in ``omnimem_ref.commands``.

User errors (:class:`~omnimem_ref.errors.OmniMemError`) are printed as one sentence and exit with
status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from omnimem_ref.errors import OmniMemError

# subcommand -> (module in omnimem_ref.commands with `add_arguments(parser)` and `run(args)`, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": (
        "generate",
        "write synthetic audio-visual clips (.mp4 + .wav) and their questions",
    ),
    "train-tiny": ("train_tiny", "train TinyOmni from scratch on freshly generated clips"),
    "finetune": (
        "finetune",
        "budget-aware LoRA fine-tuning under a compression policy (saves a peft adapter)",
    ),
    "demo": ("demo", "stream a clip under a memory budget and answer its questions"),
    "eval": ("evaluate", "accuracy of a policy at a budget on a folder of clips"),
    "bench": ("bench", "every policy at several budgets on a folder of clips: the paper's table"),
    "cost": ("cost", "compression time against prefill time at any model shape (random weights)"),
    "compare": ("compare", "two benchmark runs on the same questions: differences with intervals"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """All subcommands are listed; only the one asked for is imported (torch loads slowly)."""
    parser = argparse.ArgumentParser(prog="omnimem", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"omnimem_ref.commands.{module_name}")
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        args.run(args)
    except OmniMemError as error:
        print(f"omnimem {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"omnimem {args.command}: interrupted.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
