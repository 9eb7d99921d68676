"""`deflect serve --workers N`: real worker processes on one port, real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import TINY_KB, write_kb
from server_support import ADMIN, CLI, REPO, Server, free_port, server_env, wait_for


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def suggest_on_new_connections(base: str, count: int, session: str) -> list[dict]:
    """`count` searches, each on a connection of its own (so any worker may accept it)."""
    answers = []
    for n in range(count):
        with requests.Session() as fresh:
            response = fresh.post(f"{base}/api/suggest", json={"query": "I forgot my password", "session": f"{session}{n}"}, timeout=120)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


@pytest.fixture
def workers_server(tmp_path, database_url):
    write_kb(tmp_path / "kb", TINY_KB)
    server = Server(server_env(tmp_path, database_url), tmp_path / "serve.log", args=("--workers", "2", "--access-log"))
    try:
        server.wait_healthy()
        assert wait_for(lambda: "2 workers serving on" in server.whole_log(), timeout=300), server.log()
        assert "admin_token is not set" not in server.whole_log()
        from deflect.errors import mask_url

        # Where what it records goes, said once (a mistyped DEFLECT_DATABASE_URL is seen here).
        said = f"deflect: database {mask_url(database_url)}, index {tmp_path / 'index'}"
        assert wait_for(lambda: said in server.whole_log(), timeout=30) and server.whole_log().count(said) == 1, server.log()
        yield server
    finally:
        server.stop()


def test_two_workers_share_the_port_the_database_and_survive_a_killed_worker(workers_server):
    server = workers_server
    workers = children(server.process.pid)
    assert len(workers) == 2, server.log()

    answers = suggest_on_new_connections(server.base, 12, "before")
    assert all(a["results"][0]["id"] == "account/reset-password" for a in answers)
    # --access-log: a line per request, naming the worker that answered it; never a query string.
    assert requests.get(f"{server.base}/admin?email=kept-out-of-the-log", timeout=60).status_code == 200

    def access_lines() -> list[re.Match]:
        pattern = r'\[(\d+)\] INFO deflect\.access: 127\.0\.0\.1 "(\S+) (\S+)" (\d+) (\d+) B [\d.]+ ms$'
        return [m for line in server.whole_log().splitlines() if (m := re.search(pattern, line))]

    assert wait_for(lambda: len([m for m in access_lines() if m[3] == "/api/suggest"]) == 12, timeout=30), server.log()
    assert {int(m[1]) for m in access_lines()} <= set(workers)
    assert [m[4] for m in access_lines() if m[3] == "/admin"] == ["200"]
    assert "kept-out-of-the-log" not in server.whole_log()
    event = requests.post(f"{server.base}/api/events", json={"search_id": answers[0]["search_id"], "type": "ticket_created"}, timeout=60)
    assert event.status_code == 202, event.text  # a search logged by one worker is known to the one that gets the event

    def searches() -> int:
        return requests.get(f"{server.base}/api/metrics", headers=ADMIN, timeout=60).json()["totals"]["searches"]

    # Searches are written in the background within 0.2 s; a SIGKILL loses what is still queued.
    assert wait_for(lambda: searches() == 12, timeout=30), searches()
    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    suggest_on_new_connections(server.base, 6, "meanwhile")  # the other worker answers alone
    def replaced() -> set[int] | None:
        now = children(server.process.pid)
        return now if len(now) == 2 and killed not in now else None

    assert wait_for(replaced, timeout=300), server.log()
    assert wait_for(lambda: "exited with code -9; starting another" in server.whole_log(), timeout=60), server.log()
    suggest_on_new_connections(server.base, 6, "after")
    assert wait_for(lambda: searches() == 24, timeout=30), searches()  # nothing lost, whichever worker logged it


def test_sighup_replaces_every_worker_without_refusing_or_cutting_a_request(workers_server):
    """A reload (new code, deflect.toml read again) under load: one worker at a time, the old one
    finishing what it answers and telling kept-alive clients to reconnect, so no request fails."""
    server = workers_server
    before = children(server.process.pid)
    assert len(before) == 2
    stop_at = time.monotonic() + 240
    done = threading.Event()
    answered, failures = [0], []

    def type_searches(keep_alive: bool) -> None:
        session = requests.Session() if keep_alive else requests
        while not done.is_set() and time.monotonic() < stop_at:
            try:
                response = session.post(f"{server.base}/api/suggest", json={"query": "I forgot my password"}, timeout=60)
                if response.status_code == 200:
                    answered[0] += 1
                else:
                    failures.append(f"{response.status_code} {response.text[:100]}")
            except requests.RequestException as exc:
                failures.append(repr(exc)[:200])
            time.sleep(0.02)

    clients = [threading.Thread(target=type_searches, args=(n % 2 == 0,)) for n in range(4)]
    for client in clients:
        client.start()
    try:
        assert wait_for(lambda: answered[0] >= 20, timeout=60)
        os.kill(server.process.pid, signal.SIGHUP)
        assert wait_for(lambda: "reload done: 2 worker(s) serving" in server.whole_log(), timeout=200), server.log()
        during = answered[0]
        assert wait_for(lambda: answered[0] >= during + 20, timeout=60)  # the new workers answer
    finally:
        done.set()
        for client in clients:
            client.join(timeout=120)
    after = children(server.process.pid)
    assert len(after) == 2 and not after & before, (before, after)
    assert not any(map(is_running, before))
    assert failures == [], failures[:5]
    assert "worker 1 reloaded" in server.whole_log() and "worker 2 reloaded" in server.whole_log()
    assert "Traceback" not in server.whole_log()


def test_stopping_the_server_stops_every_worker_and_frees_the_port(workers_server):
    server = workers_server
    workers = children(server.process.pid)
    assert len(workers) == 2
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=120) == 0, server.log()
    assert not any(map(is_running, workers))
    assert port_is_free(server.port)
    assert "Traceback" not in server.whole_log()


def test_workers_stop_when_their_supervisor_is_killed(workers_server):
    server = workers_server
    workers = children(server.process.pid)
    assert len(workers) == 2
    answers = suggest_on_new_connections(server.base, 4, "before")
    server.process.kill()  # SIGKILL: the supervisor cannot stop its workers itself
    server.process.wait(timeout=60)
    try:
        assert wait_for(lambda: not any(map(is_running, workers)), timeout=60), server.log()
    finally:  # never leave orphans serving after a failed test
        for pid in filter(is_running, workers):
            os.kill(pid, signal.SIGKILL)
    assert port_is_free(server.port)
    assert server.whole_log().count("the supervisor (pid ") == 2, server.log()
    assert "Traceback" not in server.whole_log()
    assert answers[0]["results"][0]["id"] == "account/reset-password"


def test_a_server_without_an_admin_token_says_so_once(tmp_path):
    """Admin endpoints refuse without admin_token: the operator reads why at start, once for all workers."""
    write_kb(tmp_path / "kb", TINY_KB)
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'store.db'}") | {"DEFLECT_ADMIN_TOKEN": ""}
    server = Server(env, tmp_path / "serve.log", args=("--workers", "2"))
    try:
        server.wait_healthy()
        assert wait_for(lambda: "2 workers serving on" in server.whole_log(), timeout=300), server.log()
        assert wait_for(lambda: "admin_token is not set" in server.whole_log(), timeout=30), server.log()
        assert server.whole_log().count("admin_token is not set") == 1
        refused = requests.get(f"{server.base}/api/metrics", timeout=30)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "admin_disabled"
    finally:
        server.stop()


def test_a_worker_that_cannot_start_stops_the_server_with_its_error(tmp_path):
    write_kb(tmp_path / "kb", TINY_KB)
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    port = free_port()
    result = subprocess.run(
        [*CLI, "serve", "--port", str(port), "--workers", "2", "--model", str(tmp_path / "no-such-model")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Error: worker 1 (pid " in result.stderr and "exited with code" in result.stderr
    assert "Traceback" not in result.stderr
    assert port_is_free(port)


def test_workers_needs_a_port_it_can_listen_on(tmp_path):
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*CLI, "serve", "--port", str(port), "--workers", "2"], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_worker_gets_the_options_the_server_was_given():
    import click
    from click.testing import CliRunner

    from deflect.cli_options import options_as_given

    seen = {}

    @click.command()
    @click.option("--threads", type=int, default=32)
    @click.option("--workers", type=int, default=1)
    @click.option("--watch/--no-watch", "watch_kb", default=None)
    @click.option("-q", "--quiet", is_flag=True)
    @click.option("--kb", default=None)
    @click.pass_context
    def serve(ctx, **_):
        seen["args"] = options_as_given(ctx, skip=("workers",))

    result = CliRunner().invoke(serve, ["--workers", "3", "--no-watch", "-q", "--kb", "my kb"])
    assert result.exit_code == 0, result.output
    assert seen["args"] == ["--threads", "32", "--no-watch", "--quiet", "--kb", "my kb"]
    CliRunner().invoke(serve, [])
    assert seen["args"] == ["--threads", "32"]  # unset options stay unset: the worker reads the same settings
