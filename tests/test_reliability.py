"""Faults and change while serving: hot reindex, the KB watcher, kill -9, replicas.

Every test here runs real `deflect serve` / `deflect index` processes with the real
model, over real HTTP, on a SQLite file or a real PostgreSQL server.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests
from conftest import SAMPLE_KB, TINY_KB, write_kb
from server_support import (
    ADMIN,
    Server,
    index_is_whole,
    kill_during_event_load,
    kill_during_indexing,
    reindex_under_load,
    replica_convergence,
    run_cli,
    server_env,
    wait_for,
)

from deflect.index_folder import load_index
from deflect.watcher import KBWatcher, is_relevant

NEW_ARTICLE = """---
title: Pair a Zorblax hardware key
---
Plug the Zorblax key into a USB port, open Settings, then Security, then Hardware keys,
and press Pair. The key blinks green once it is paired with your Orbitask account.
"""
NEW_QUERY = "how do I pair my zorblax key"


def _sqlite(root: Path) -> str:
    return f"sqlite:///{root / 'deflect.db'}"


# --- the watcher on its own ---------------------------------------------------------------


def test_watcher_event_filter():
    assert is_relevant("modified", False, ["/kb/a.md"])
    assert is_relevant("moved", False, ["/kb/.a.md.swp", "/kb/a.md"])  # an editor's atomic save
    assert is_relevant("deleted", True, ["/kb/billing"])
    assert not is_relevant("modified", False, ["/kb/notes.txt"])
    assert is_relevant("created", False, ["/kb/a.markdown"])  # read as an article too (kb_folder.is_article_file)
    assert not is_relevant("opened", False, ["/kb/a.md"])
    assert not is_relevant("modified", True, ["/kb/billing"])  # any write inside; the file event follows


def test_watcher_calls_once_after_a_burst_of_saves(tmp_path):
    calls: list[float] = []
    watcher = KBWatcher(tmp_path, lambda: calls.append(time.monotonic()), debounce=0.5).start()
    try:
        for n in range(5):
            (tmp_path / f"a{n}.md").write_text(f"# Article {n}\n\nBody {n}.\n")
            time.sleep(0.05)
        (tmp_path / "ignored.txt").write_text("not an article")
        assert wait_for(lambda: calls, timeout=10), "no reindex after saving articles"
        time.sleep(1.0)
        assert len(calls) == 1, "one burst of saves must give one reindex"
        (tmp_path / "notes.txt").write_text("still not an article")
        time.sleep(1.0)
        assert len(calls) == 1
        (tmp_path / "a0.md").unlink()
        assert wait_for(lambda: len(calls) == 2, timeout=10), "deleting an article must reindex"
    finally:
        watcher.stop()


def test_a_failed_reindex_is_retried_without_another_edit(tmp_path, caplog):
    """Disk full during the reindex of an edit: once space is back, the edit is served without
    anyone saving again (it used to wait for the next edit); the traceback is logged once."""
    calls: list[float] = []

    def reindex() -> None:
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise OSError(28, "No space left on device")

    watcher = KBWatcher(tmp_path, reindex, debounce=0.2, retry_first=0.3, retry_max=0.6).start()
    try:
        with caplog.at_level("INFO", logger="deflect.watcher"):
            (tmp_path / "a.md").write_text("# A\n\nBody.\n")
            assert wait_for(lambda: len(calls) == 4, timeout=20), f"{len(calls)} reindexes"
            time.sleep(1.0)
        assert len(calls) == 4, "after a success it waits for the next change again"
        gaps = [round(b - a, 1) for a, b in zip(calls, calls[1:])]
        assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[2] >= 0.6, gaps  # backing off, capped
        failures = [r for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) == 3 and [bool(r.exc_info) for r in failures] == [True, False, False]
        assert any("succeeded again" in r.getMessage() for r in caplog.records)
    finally:
        watcher.stop()


def test_the_watcher_follows_a_kb_folder_moved_away_and_back_or_swapped(tmp_path):
    """The OS watches a folder, not a path: moved away and back, or replaced by a new copy (a deploy),
    kb_dir is another folder, and the edits made there must still be served."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nBody.\n")
    calls: list[float] = []
    watcher = KBWatcher(kb, lambda: calls.append(time.monotonic()), debounce=0.2, folder_check=0.2).start()
    try:
        kb.rename(tmp_path / "kb.gone")
        assert wait_for(lambda: len(calls) == 1, timeout=10), "kb_dir gone: the reindex says so"
        (tmp_path / "kb.gone").rename(kb)
        assert wait_for(lambda: len(calls) == 2, timeout=10), "kb_dir back"
        (kb / "b.md").write_text("# B\n\nBody.\n")
        assert wait_for(lambda: len(calls) == 3, timeout=10), "an edit after the folder came back"

        fresh = tmp_path / "kb.new"
        fresh.mkdir()
        (fresh / "c.md").write_text("# C\n\nBody.\n")
        kb.rename(tmp_path / "kb.old")
        fresh.rename(kb)  # a deploy swaps in a new copy
        assert wait_for(lambda: len(calls) == 4, timeout=10), "a swapped-in folder"
        (kb / "d.md").write_text("# D\n\nBody.\n")
        assert wait_for(lambda: len(calls) == 5, timeout=10), "an edit in the new folder"
        (tmp_path / "kb.old" / "a.md").write_text("# A again\n\nBody.\n")  # no longer the KB
        time.sleep(1.0)
        assert len(calls) == 5
    finally:
        watcher.stop()


# --- serving while the KB changes ---------------------------------------------------------


def test_serve_follows_writers_through_the_watcher(tmp_path):
    write_kb(tmp_path / "kb", TINY_KB)
    server = Server(server_env(tmp_path, _sqlite(tmp_path), watch_kb="true"), tmp_path / "serve.log")
    try:
        before = server.wait_healthy()
        (tmp_path / "kb" / "security").mkdir()
        (tmp_path / "kb" / "security" / "hardware-key.md").write_text(NEW_ARTICLE)
        grown = wait_for(lambda: server.health()["articles"] == before["articles"] + 1, timeout=60, interval=0.3)
        assert grown, f"the new article was not indexed: {server.log()}"
        answer = requests.post(f"{server.base}/api/suggest", json={"query": NEW_QUERY}, timeout=60).json()
        assert answer["results"][0]["id"] == "security/hardware-key"
        (tmp_path / "kb" / "security" / "hardware-key.md").unlink()
        shrunk = wait_for(lambda: server.health()["articles"] == before["articles"], timeout=60, interval=0.3)
        assert shrunk, f"the deleted article stayed: {server.log()}"
        # A broken save is skipped, and the server's log names the file for the writer...
        (tmp_path / "kb" / "broken.md").write_text("---\ntitle: [unclosed\n---\nBody.\n")
        assert wait_for(lambda: "broken.md" in server.log(), timeout=60, interval=0.3), server.log()
        assert server.health()["articles"] == before["articles"]
        # ...once: later reindexes (here a .markdown article saved next to it) do not repeat it.
        (tmp_path / "kb" / "security" / "hardware-key.markdown").write_text(NEW_ARTICLE)
        grown = wait_for(lambda: server.health()["articles"] == before["articles"] + 1, timeout=60, interval=0.3)
        assert grown, f"the .markdown article was not indexed: {server.log()}"
        log = server.log()
        assert log.count("broken.md: skipped") == 1, log
        # Each watcher reindex logs one INFO line saying what changed and how long it took.
        assert "reindex after a KB change took " in log and "1 added, 0 changed, 0 removed" in log, log
        assert "passages embedded, 1 file skipped" in log, log
    finally:
        server.stop()


def test_reindex_under_typing_load_fails_no_request(tmp_path):
    """8 clients type questions while 10 reindexes (each with a real edit) swap the index in."""
    shutil.copytree(SAMPLE_KB, tmp_path / "kb")
    server = Server(server_env(tmp_path, _sqlite(tmp_path)), tmp_path / "serve.log")
    try:
        server.wait_healthy()
        figures = reindex_under_load(server, tmp_path / "kb" / "account" / "reset-password.md", clients=8, reindexes=10)
        assert figures["changed"] == [["account/reset-password.md"]] * 10
        assert len(set(figures["versions"])) == 11, "each reindex must swap in a new version"
        assert server.health()["index_version"] == figures["versions"][-1]
        assert figures["requests"] >= 50, f"too little load to mean anything: {figures['requests']} requests"
        assert figures["failures"] == [], figures["failures"][:5]
    finally:
        server.stop()


# --- kill -9 ------------------------------------------------------------------------------


def test_kill9_in_the_middle_of_indexing_keeps_the_previous_index(tmp_path):
    shutil.copytree(SAMPLE_KB, tmp_path / "kb")
    env = server_env(tmp_path, _sqlite(tmp_path))
    run_cli(env, "index")
    figures = kill_during_indexing(env, tmp_path / "kb", tmp_path / "index", ("embedding", "calibrating", "saving"))
    # Embedding takes seconds, so that kill always lands mid-build and must leave the previous
    # index; calibrating and saving may be over before a kill arrives on a fast machine, so
    # for them the check is the one kill_during_indexing makes after every kill: the live
    # index loads whole (previous or complete new version).
    assert figures["outcomes"][0] == "midway, previous index", figures

    server = Server(env, tmp_path / "serve.log")
    try:
        server.wait_healthy()
        answer = requests.post(f"{server.base}/api/suggest", json={"query": "I forgot my password"}, timeout=60).json()
        assert answer["results"][0]["id"] == "account/reset-password"
        assert server.health()["index_version"] == index_is_whole(tmp_path / "index")
    finally:
        server.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill9_under_event_load_loses_no_acknowledged_event(tmp_path, database, request):
    url = _sqlite(tmp_path) if database == "sqlite" else request.getfixturevalue("postgres_url")
    write_kb(tmp_path / "kb", TINY_KB)
    env = server_env(tmp_path, url)
    figures = kill_during_event_load(env, url, tmp_path, clients=8, min_acked=200)
    assert figures["acknowledged"] >= 200
    assert figures["missing"] == [], f"{len(figures['missing'])} of {figures['acknowledged']} acknowledged events were lost"

    again = Server(env, tmp_path / "restart.log")
    try:
        again.wait_healthy()
        report = requests.get(f"{again.base}/api/metrics", headers=ADMIN, timeout=60).json()
        assert sum(report["events"].values()) >= figures["acknowledged"]
    finally:
        again.stop()


# --- replicas -----------------------------------------------------------------------------


@pytest.fixture
def two_replicas(tmp_path, postgres_url):
    """Two servers started together on one new PostgreSQL database and one index folder.

    The KB watcher is off, so only the database tells one about the other's builds. Both
    find the sample ideas file on their first start; one of them imports it.
    """
    write_kb(tmp_path / "kb", TINY_KB)
    shutil.copy(SAMPLE_KB / "ideas.jsonl", tmp_path / "kb" / "ideas.jsonl")
    env = server_env(tmp_path, postgres_url)
    run_cli(env, "index")
    servers = [Server(env, tmp_path / f"{name}.log") for name in ("a", "b")]
    try:
        for server in servers:
            server.wait_healthy()
        yield servers, env
    finally:
        for server in servers:
            server.stop()


def test_replicas_serve_a_new_version_within_seconds(two_replicas, tmp_path):
    (a, b), env = two_replicas
    ideas = len((SAMPLE_KB / "ideas.jsonl").read_text().splitlines())
    assert a.health()["ideas"] == b.health()["ideas"] == ideas
    (tmp_path / "kb" / "hardware-key.md").write_text(NEW_ARTICLE)
    built = requests.post(f"{a.base}/api/reindex", headers=ADMIN, timeout=300).json()
    assert built["added"] == ["hardware-key.md"]
    assert wait_for(lambda: b.health()["index_version"] == built["index_version"], timeout=30), b.log()
    answer = requests.post(f"{b.base}/api/suggest", json={"query": NEW_QUERY}, timeout=60).json()
    assert answer["results"][0]["id"] == "hardware-key"

    # B builds next (from A's version, under the folder's lock), and A follows.
    assert max(replica_convergence(b, a, tmp_path / "kb", rounds=2)) < 30

    # `deflect index` run by a writer beside the servers reaches both of them the same way.
    (tmp_path / "kb" / "hardware-key.md").unlink()
    run_cli(env, "index")
    version = load_index(tmp_path / "index").version
    for server in (a, b):
        assert wait_for(lambda s=server: s.health()["index_version"] == version, timeout=30), server.log()
        assert server.health()["articles"] == len(TINY_KB)


def test_a_version_built_with_other_passages_is_not_followed(settings_factory, tiny_kb, caplog):
    """During an upgrade an older deflect may still build into the shared folder with its own
    article parser (or passage size): a process keeps serving what it built itself instead of
    searching passages it would not make, and says why once."""
    from deflect.runtime import Runtime

    ours = Runtime(settings_factory(), sync=False)
    try:
        serving = ours.engine.version
        other = Runtime(settings_factory(passage_chars=300), sync=False)  # builds and publishes its own
        try:
            assert other.engine.version != serving
        finally:
            other.close()
            other.db.dispose()
        with caplog.at_level("WARNING", logger="deflect.runtime"):
            assert ours.follow_index() is False
            assert ours.follow_index() is False
        said = [r.getMessage() for r in caplog.records if "not loading it" in r.getMessage()]
        assert said == [f"index {other.engine.version} was built by another process with a different passage size; not loading it"]
        assert ours.engine.version == serving
    finally:
        ours.close()
        ours.db.dispose()


def test_a_recorded_version_missing_from_the_folder_is_said_once(settings_factory, tiny_kb, monkeypatch, caplog):
    """A replica left on its own index folder (not the shared one) hears of other builds only
    through the database: it says so once per version, instead of staying silent forever."""
    import deflect.runtime
    from deflect.replicas import publish_version
    from deflect.runtime import Runtime

    runtime = Runtime(settings_factory(), sync=False)
    try:
        serving = runtime.engine.version
        publish_version(runtime.db, "20990101T000000-abcdef")  # built on another machine's folder
        monkeypatch.setattr(deflect.runtime, "ABSENT_VERSION_GRACE_SECONDS", 0.2)
        with caplog.at_level("INFO", logger="deflect.runtime"):
            assert runtime.follow_index() is False  # first seen: may be mid-switch, nothing said yet
            assert not [r for r in caplog.records if "abcdef" in r.getMessage()]
            time.sleep(0.3)
            for _ in range(3):
                assert runtime.follow_index() is False
        said = [r.getMessage() for r in caplog.records if "abcdef" in r.getMessage()]
        assert len(said) == 1, said
        assert f"is not in {runtime.settings.index_dir} (serving {serving})" in said[0]
        assert runtime.engine.version == serving
    finally:
        runtime.close()
        runtime.db.dispose()
