"""An index built elsewhere and mounted read-only (a container image, a shared volume) is served
as it is while it matches the KB; a rebuild it would need is refused with a one-line cause."""

from __future__ import annotations

import subprocess
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
