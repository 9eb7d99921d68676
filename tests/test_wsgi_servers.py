"""server.py under the WSGI servers the README names (waitress-serve, gunicorn), as real processes:
a search answered just before the server is stopped is still stored, as with `deflect serve`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import TINY_KB, write_kb
from server_support import REPO, Server, free_port, run_cli, server_env

BIN = Path(sys.executable).parent


class WSGIServer(Server):
    """server.py under another WSGI server (cwd: the repository, where server.py is)."""

    def __init__(self, env: dict[str, str], log_path: Path, command: list[str], port: int):
        self.env, self.log_path, self.port = env, log_path, port
        self.base = f"http://127.0.0.1:{port}"
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)


def commands(port: int) -> dict[str, list[str]]:
    return {
        "waitress-serve": [str(BIN / "waitress-serve"), "--no-clear-untrusted-proxy-headers", "--listen",
                           f"127.0.0.1:{port}", "server:app"],
        "gunicorn": [str(BIN / "gunicorn"), "--workers", "1", "--threads", "8", "--bind", f"127.0.0.1:{port}",
                     "--graceful-timeout", "60", "server:app"],
    }


@pytest.mark.parametrize("wsgi", ["waitress-serve", "gunicorn"])
def test_searches_answered_just_before_a_stop_are_stored(tmp_path, wsgi):
    if not (BIN / wsgi).exists() or shutil.which(str(BIN / wsgi)) is None:
        pytest.fail(f"{wsgi} is not installed in this environment (pyproject's test extra installs it)")
    write_kb(tmp_path / "kb", TINY_KB)
    database = tmp_path / "d.db"
    env = server_env(tmp_path, f"sqlite:///{database}")
    run_cli(env, "index", timeout=300)
    port = free_port()
    server = WSGIServer(env, tmp_path / f"{wsgi}.log", commands(port)[wsgi], port)
    try:
        server.wait_healthy()
        ids = []
        for n in range(40):  # the search log writes in batches: the last ones are still queued
            answer = requests.post(f"{server.base}/api/suggest", json={"query": f"I forgot my password {n}"}, timeout=60)
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["search_id"])
        server.process.terminate()  # SIGTERM at once, as a supervisor or a deploy does
        assert server.process.wait(timeout=120) == 0, server.log()
    finally:
        server.stop()
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT id FROM searches")).scalars())
    engine.dispose()
    assert set(ids) <= stored, f"{len(set(ids) - stored)} of 40 searches lost: {server.log()}"
