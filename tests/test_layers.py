"""The package's layers import only downwards: rows <- core <- policies <- streaming <- the rest.

Read from the source with ``ast`` (``if TYPE_CHECKING:`` imports count too): a reader can open
``core.py`` and ``policies/`` without knowing how a model or a session works.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "omnimem_ref"
LEAVES = {"omnimem_ref.errors", "omnimem_ref.budget", "omnimem_ref.masks", "omnimem_ref.rows"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("omnimem_ref")}


def within(path: Path) -> list[tuple[str, set[str]]]:
    return [(p.name, imported_modules(p)) for p in sorted(path.glob("*.py"))]


def test_core_imports_nothing_of_the_package_but_how_rows_move():
    assert imported_modules(PACKAGE / "core.py") == {"omnimem_ref.rows"}
    assert imported_modules(PACKAGE / "rows.py") == set()
    assert imported_modules(PACKAGE / "masks.py") == set()


@pytest.mark.parametrize(("name", "imports"), within(PACKAGE / "policies"))
def test_policies_import_only_core_leaves_and_each_other(name, imports):
    allowed = {"omnimem_ref.core"} | LEAVES
    outside = {m for m in imports if m not in allowed and not m.startswith("omnimem_ref.policies")}
    assert not outside, f"policies/{name} imports {sorted(outside)}"


@pytest.mark.parametrize(("name", "imports"), within(PACKAGE / "streaming"))
def test_streaming_imports_only_core_and_the_policy_interface(name, imports):
    allowed = {"omnimem_ref.core", "omnimem_ref.policies.base", "omnimem_ref.features"} | LEAVES
    outside = {m for m in imports if m not in allowed and not m.startswith("omnimem_ref.streaming")}
    assert not outside, f"streaming/{name} imports {sorted(outside)}"
