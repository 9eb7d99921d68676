"""An index built elsewhere and mounted read-only (a container image, a shared volume) is served
as it is while it matches the KB; a rebuild it would need is refused with a one-line cause."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import TINY_KB, write_kb
from server_support import ADMIN, CLI, REPO, Server, free_port, run_cli, server_env


@pytest.fixture
def read_only_index(tmp_path) -> tuple[Path, Path]:
    """(the writable index folder, a read-only bind mount of it), built from tmp_path/kb."""
    write_kb(tmp_path / "kb", TINY_KB)
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    run_cli(env, "index", timeout=300)
    source, view = tmp_path / "index", tmp_path / "view"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(source), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a read-only view needs mount privileges: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True, capture_output=True)
        with pytest.raises(OSError, match="Read-only"):
            (view / "probe").write_text("x")
        yield source, view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_current_index_is_served_and_a_needed_rebuild_is_refused(tmp_path, read_only_index):
    source, view = read_only_index
    versions = sorted(p.name for p in source.glob("v-*"))
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", index_dir=str(view))
    server = Server(env, tmp_path / "serve.log")
    try:
        health = server.wait_healthy()
        assert health["articles"] == len(TINY_KB) and health["index_version"] == versions[0][2:]
        answer = requests.post(f"{server.base}/api/suggest", json={"query": "I forgot my password"}, timeout=60)
        assert answer.json()["results"][0]["id"] == "account/reset-password"

        article = tmp_path / "kb" / "account" / "reset-password.md"
        article.write_text(article.read_text() + "\n## Still stuck?\n\nWrite to support from the sign-in page.\n")
        refused = requests.post(f"{server.base}/api/reindex", headers=ADMIN, timeout=120)
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "index_read_only" and str(view) in error["message"]
        assert server.health()["index_version"] == health["index_version"]  # the old version keeps serving
        assert requests.post(f"{server.base}/api/suggest", json={"query": "reset my password"}, timeout=60).ok
    finally:
        server.stop()
    assert sorted(p.name for p in source.glob("v-*")) == versions

    # Starting on the changed KB: one line naming the folder, no traceback, exit status 1.
    started = subprocess.run([*CLI, "serve", "--port", str(free_port())], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert started.returncode == 1
    assert f"Error: cannot save a new index version in {view} (Read-only file system)" in started.stderr
    assert "Traceback" not in started.stderr + started.stdout


def _refuse_writes(monkeypatch, folder: Path) -> None:
    """Writes under `folder` fail as on a read-only mount (for machines where mounting is not allowed)."""
    import errno
    import tempfile

    import deflect.replicas

    real_open, real_mkdtemp = open, tempfile.mkdtemp

    def guarded_open(path, mode="r", *args, **kwargs):
        if str(path).startswith(str(folder)) and any(m in mode for m in "wa+x"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    def guarded_mkdtemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(folder)):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkdtemp(*args, dir=dir, **kwargs)

    real_access = os.access
    monkeypatch.setattr(deflect.replicas, "open", guarded_open, raising=False)
    monkeypatch.setattr(tempfile, "mkdtemp", guarded_mkdtemp)
    monkeypatch.setattr(os, "access", lambda path, mode: real_access(path, mode) and not str(path).startswith(str(folder)))


def test_lock_and_save_in_a_folder_that_refuses_writes(tmp_path, settings_factory, monkeypatch, caplog):
    """The same paths without mount privileges: the lock is still taken through a read-only
    handle on the existing lock file, an up-to-date index needs no write, and a needed build
    fails with the one-line cause, worded for a folder with and without an index."""
    import fcntl

    from deflect.index_folder import IndexFolderReadOnly
    from deflect.refresh import refresh_index
    from deflect.replicas import LOCK_FILE, build_lock
    from deflect.watcher import KBWatcher

    write_kb(tmp_path / "kb", TINY_KB)
    settings = settings_factory()
    built, _ = refresh_index(settings)
    _refuse_writes(monkeypatch, tmp_path / "index")

    with build_lock(tmp_path / "index"):  # held through a read-only handle: another holder waits
        with open(tmp_path / "index" / LOCK_FILE) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert refresh_index(settings)[0].version == built.version  # nothing to save: served as it is

    article = tmp_path / "kb" / "account" / "reset-password.md"
    article.write_text(article.read_text() + "\nOne more line.\n")
    with pytest.raises(IndexFolderReadOnly, match="changed since the index there was built"):
        refresh_index(settings)
    with pytest.raises(IndexFolderReadOnly, match="there is no index there yet"):
        refresh_index(settings_factory(index_dir=str(tmp_path / "index" / "fresh")))

    # The KB watcher logs the cause in one line, without a traceback.
    def rebuild():
        refresh_index(settings)

    watcher = KBWatcher(tmp_path / "kb", rebuild, debounce=0.05)
    with caplog.at_level("WARNING", logger="deflect.watcher"):
        watcher.start()
        try:
            article.write_text(article.read_text() + "\nAnd another.\n")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not caplog.records:
                time.sleep(0.1)
        finally:
            watcher.stop()
    [line] = [r for r in caplog.records if "reindex after a KB change failed" in r.getMessage()][:1]
    assert "cannot save a new index version in" in line.getMessage() and not line.exc_info
