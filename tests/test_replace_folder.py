"""``files.replace_folder``: a checkpoint or adapter folder is replaced whole, and nothing else
beside it is touched."""

from __future__ import annotations

from pathlib import Path

from omnimem_ref.files import OLD_SUFFIX, recover_folder, replace_folder, sibling


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "weights.txt").write_text(text)
    return path


def test_replace_keeps_a_users_own_old_folder(tmp_path):
    out = _folder(tmp_path / "run", "first")
    users = _folder(tmp_path / "run.old", "the user's")
    replace_folder(_folder(tmp_path / "run.tmp", "second"), out)
    assert (out / "weights.txt").read_text() == "second"
    assert (users / "weights.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.old"]


def test_a_cut_between_the_renames_is_recovered(tmp_path):
    out = tmp_path / "run"
    _folder(sibling(out, OLD_SUFFIX), "first")  # the old folder stepped aside, then the cut
    recover_folder(out)
    assert (out / "weights.txt").read_text() == "first"
