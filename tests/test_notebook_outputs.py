"""Every notebook is committed executed, top to bottom, with its figures, so a reader on GitHub
sees them without running anything. After a change that alters what a notebook shows, run
``make notebook-outputs`` and commit the result (nbval re-executes them all in CI anyway)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_with_its_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert None not in counts, f"{path.name} has cells that were never run: `make notebook-outputs`"
    assert counts == list(range(1, len(code) + 1)), f"{path.name} was not run top to bottom"
    figures = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert figures, f"{path.name} has no figure in its outputs"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with an error in its outputs"


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 6
