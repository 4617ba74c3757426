"""Run the ``omnimem`` command line in-process, as the tests of every command do."""

from __future__ import annotations

import pytest

from omnimem_ref import cli


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The exit code, stdout and stderr of ``omnimem *argv``."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
