"""An index folder is readable by other users when the umask says so (a server running as
another user than the builder: an index built into a container image, one folder on NFS),
and stays private when the operator's umask makes new files private."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import TINY_KB, write_kb
from server_support import CLI, REPO, server_env

from deflect import filemodes
from deflect.onnx_export import INT8_MODEL_FILE


def _index_under_umask(root: Path, umask: int) -> Path:
    """`deflect index` (the ONNX int8 backend, its export cached in the index folder) run with umask."""
    write_kb(root / "kb", TINY_KB)
    env = server_env(root, f"sqlite:///{root / 'd.db'}", embed_backend="onnx-int8")
    subprocess.run([*CLI, "index"], env=env, cwd=REPO, check=True, capture_output=True, text=True, timeout=600, umask=umask)
    return root / "index"


def _modes(index: Path) -> dict[str, int]:
    """Permission bits of the live version folder and its files, and of the ONNX export and its files."""
    version = index / (index / "CURRENT").read_text().strip()
    (export,) = [p for p in (index / "onnx").iterdir() if not p.name.startswith(".")]
    paths = [version, *version.iterdir(), export, *export.rglob("*")]
    assert (version / "manifest.json") in paths and (version / "vectors.npy") in paths
    assert (export / "model.onnx") in paths and (export / INT8_MODEL_FILE) in paths
    return {str(p.relative_to(index)): stat.S_IMODE(p.lstat().st_mode) for p in paths if not p.is_symlink()}


@pytest.mark.parametrize(
    ("umask", "folder_mode", "file_mode"),
    [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)],
    ids=["umask-022", "umask-077"],
)
def test_index_files_get_the_modes_the_umask_gives(tmp_path, umask, folder_mode, file_mode):
    index = _index_under_umask(tmp_path, umask)
    modes = _modes(index)
    assert modes == {name: folder_mode if (index / name).is_dir() else file_mode for name in modes}


def test_process_umask_is_read_without_changing_it():
    before = os.umask(0o027)
    try:
        assert filemodes.process_umask() == 0o027
        assert filemodes.process_umask() == 0o027  # reading it left it alone
    finally:
        os.umask(before)


def test_open_up_widens_a_private_scratch_tree_and_leaves_symlinks_alone(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("x")
    outside.chmod(0o600)
    scratch = Path(tempfile.mkdtemp(dir=tmp_path))
    (scratch / "sub").mkdir(mode=0o700)
    handle, name = tempfile.mkstemp(dir=scratch / "sub")
    os.close(handle)
    (scratch / "link").symlink_to(outside)
    filemodes.open_up(scratch, umask=0o022)
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o755
    assert stat.S_IMODE((scratch / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE(Path(name).stat().st_mode) == 0o644
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600  # not followed


def test_the_fallback_without_proc_restores_the_umask():
    before = os.umask(0o027)
    try:
        assert filemodes._umask_by_toggling() == 0o027
        assert filemodes.process_umask() == 0o027
    finally:
        os.umask(before)
