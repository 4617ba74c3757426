"""The ``omnimem`` command line: one subcommand per module in :mod:`omnimem_ref.commands`.

User errors (:class:`~omnimem_ref.errors.OmniMemError`) are printed as one sentence and exit with
status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from omnimem_ref.errors import OmniMemError

# subcommand name -> module in omnimem_ref.commands with `add_arguments(parser)` and `run(args)`
SUBCOMMANDS: dict[str, str] = {
    "generate": "generate",
    "train-tiny": "train_tiny",
    "demo": "demo",
    "eval": "evaluate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnimem", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"omnimem_ref.commands.{module_name}")
        sub = subparsers.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
