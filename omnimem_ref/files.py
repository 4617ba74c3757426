"""Writing outputs so that nobody ever reads half a file, or half a folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)`` beside ``path``, then rename it into place: a reader never
    sees a half-written file, and a failed run leaves the old file (if any) untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sibling(folder: Path, suffix: str) -> Path:
    """``folder`` with ``suffix`` appended to its name, beside it (same filesystem: renames
    between the two are atomic)."""
    return folder.with_name(folder.name + suffix)


# Where replace_folder moves the folder it replaces, for the moment between its two renames. A
# name no user would pick for a folder of their own, because an unfinished replace leaves it
# behind and the next one deletes it.
OLD_SUFFIX = ".being-replaced"


def replace_folder(new: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by the whole, finished folder ``new`` (a sibling of it).

    Its files are synced to disk first, so after a power cut the renames cannot have landed
    before their contents. One rename cannot replace a folder that is not empty, so the old one
    steps aside first (to its name plus ``OLD_SUFFIX``): at every moment one of the two names
    holds a whole folder, and :func:`recover_folder` puts the old one back if a cut fell between
    the renames."""
    for path in new.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    old = sibling(out_dir, OLD_SUFFIX)
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(new, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(out_dir: Path) -> None:
    """Undo a :func:`replace_folder` cut between its two renames: bring the old folder back."""
    old = sibling(out_dir, OLD_SUFFIX)
    if not out_dir.exists() and old.is_dir():
        os.replace(old, out_dir)
