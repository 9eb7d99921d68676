"""The database out of reach while serving (deflect.outage): requests fail fast with 503,
/healthz stays up (degraded), suggest keeps working, and the log says it in a few lines.

The end-to-end test stops a real PostgreSQL server of its own under a real `deflect serve`
and starts it again; the others point a real engine at a port where nothing listens.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time

import pytest
import requests
import sqlalchemy as sa
from conftest import TINY_KB, serve_app, write_kb
from pg_support import LocalPostgres, find_pg_bin, free_port, fresh_database
from server_support import ADMIN, Server, server_env, wait_for

from deflect.outage import DatabaseUnavailable, FailureLog, is_database_unavailable


def dead_engine() -> sa.Engine:
    """A real PostgreSQL engine on a local port where nothing listens: every connect is refused."""
    return sa.create_engine(f"postgresql+psycopg://deflect@127.0.0.1:{free_port()}/gone", pool_pre_ping=True)


def refused_error() -> sa.exc.OperationalError:
    with pytest.raises(sa.exc.OperationalError) as caught, dead_engine().connect():
        pass
    return caught.value


# --- what counts as "the database is unavailable" -----------------------------------------


def test_unreachable_and_locked_databases_are_told_apart_from_bugs(tmp_path):
    assert is_database_unavailable(refused_error())
    assert is_database_unavailable(DatabaseUnavailable("searches wait"))
    wrapped = RuntimeError("while listing ideas")
    wrapped.__cause__ = refused_error()
    assert is_database_unavailable(wrapped)

    def sqlite_error(message: str) -> sa.exc.OperationalError:
        return sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))

    assert is_database_unavailable(sqlite_error("database is locked"))
    assert is_database_unavailable(sqlite_error("unable to open database file"))
    # A mistake in a query is a bug (500 with its traceback in the log), not an outage.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(sa.exc.OperationalError) as caught, engine.connect() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert not is_database_unavailable(caught.value)
    assert not is_database_unavailable(ValueError("no"))
    assert not is_database_unavailable(sa.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))


# --- the log during an outage ---------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_sync_loop_logs_an_outage_in_a_few_lines(settings_factory, tiny_kb, caplog):
    """A failing sync tick every second for 150 s: the first failure with its traceback, a short line
    a minute later and another one two minutes later, then one INFO line when the database is back."""
    from deflect.runtime import Runtime

    runtime = Runtime(settings_factory(kb_dir=str(tiny_kb)), sync=False)
    clock = FakeClock()
    runtime._sync_failures.clock = clock
    healthy = runtime.db
    runtime.db = dead_engine()
    try:
        with caplog.at_level(logging.INFO, logger="deflect.runtime"):
            for _ in range(151):
                runtime.sync_step()
                clock.now += 1.0
            runtime.db = healthy
            runtime.sync_step()
            runtime.sync_step()
    finally:
        runtime.db = healthy
        runtime.close()
        healthy.dispose()
    lines = [r for r in caplog.records if r.name == "deflect.runtime"]
    assert [r.levelname for r in lines] == ["WARNING", "WARNING", "WARNING", "INFO"], [r.getMessage() for r in lines]
    first, *short, recovered = lines
    assert first.getMessage() == "sync with the database failed" and first.exc_info is not None
    assert all(r.exc_info is None for r in (*short, recovered))
    assert "still failing after 60 s (failed attempts: 61)" in short[0].getMessage()
    assert "still failing after 120 s (failed attempts: 121)" in short[1].getMessage()
    assert "Connection refused" in short[0].getMessage() or "connect" in short[0].getMessage()
    assert recovered.getMessage() == "sync with the database works again after 151 s (failed attempts: 151)"


def test_failure_log_starts_over_after_recovery(caplog):
    clock = FakeClock()
    failures = FailureLog(logging.getLogger("deflect.test"), "the job", interval=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="deflect.test"):
        for round_ in range(2):
            for _ in range(30):
                failures.failed(refused_error() if round_ else ValueError("boom"))
                clock.now += 1
            failures.succeeded()
            failures.succeeded()  # works and keeps working: nothing more to say
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING", "INFO"]
    assert caplog.records[2].exc_info is not None  # a new outage shows its traceback again


def test_a_request_waiting_for_searches_fails_fast_while_the_database_is_away(tmp_path, caplog):
    """SearchLog.flush (metrics, events on a search still queued) used to wait up to 60 s."""
    from deflect import db
    from deflect.events import SearchLog, get_search

    log = SearchLog(dead_engine(), linger=0.0)
    try:
        search_id = log.record("a question", "s1", None, True, [], "v1")
        with caplog.at_level(logging.INFO, logger="deflect.events"):
            for _ in range(5):
                started = time.monotonic()
                with pytest.raises(DatabaseUnavailable):
                    log.flush(timeout=30)
                assert time.monotonic() - started < 3.0
        writer_lines = [r for r in caplog.records if r.name == "deflect.events"]
        # Five hurried retries and the writer's own: one line (with its traceback) for the whole outage.
        assert len(writer_lines) == 1 and writer_lines[0].exc_info is not None, [r.getMessage() for r in writer_lines]
        # The database is back: the search waiting in memory is written, and flush says so.
        store = db.make_engine(f"sqlite:///{tmp_path / 'back.db'}")
        db.upgrade(store)
        log.engine = store
        with caplog.at_level(logging.INFO, logger="deflect.events"):
            assert log.flush(timeout=30)
        assert get_search(store, search_id)["query"] == "a question"
        assert "search log: writing searches to the database works again" in caplog.text
    finally:
        log.close()


def test_searches_wait_for_the_database_however_many_writes_fail(tmp_path):
    """The writer used to drop a batch after 999 failed writes (about 80 minutes of outage)."""
    from deflect import db
    from deflect.events import SearchLog, get_search

    # A database file that cannot be opened fails each write in microseconds (a refused
    # PostgreSQL connection takes ~60 ms): a thousand failures in well under a second.
    unopenable = sa.create_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}")
    log = SearchLog(unopenable, linger=0.0, retry_seconds=1e-6)  # waits grow with attempts: 0.7 s in all
    try:
        search_id = log.record("asked during a long outage", "s1", None, False, [], "v1")
        assert wait_for(lambda: log._failed_attempts > 1200, timeout=120), log._failed_attempts
        store = db.make_engine(f"sqlite:///{tmp_path / 'back.db'}")
        db.upgrade(store)
        log.engine = store
        # A write begun on the old engine just before the swap may still fail: flush says so
        # (503 to an event that waits on it, and the widget retries). The next write succeeds.
        assert wait_for(lambda: _flushed(log), timeout=30)
        assert get_search(store, search_id)["query"] == "asked during a long outage"
    finally:
        log.close()


def _flushed(log) -> bool:
    from deflect.outage import DatabaseUnavailable

    try:
        return log.flush(timeout=5)
    except DatabaseUnavailable:
        return False


def test_the_backlog_is_bounded_and_says_so_once(tmp_path, caplog):
    from deflect import db
    from deflect.events import SearchLog, get_search

    log = SearchLog(dead_engine(), linger=0.0, max_waiting=3)
    try:
        with caplog.at_level(logging.INFO, logger="deflect.events"):
            ids = [log.record(f"question {n}", f"s{n}", None, False, [], "v1") for n in range(6)]
            full = [r for r in caplog.records if "backlog waiting for the database is full" in r.getMessage()]
            assert len(full) == 1  # three searches over the bound: one line
            store = db.make_engine(f"sqlite:///{tmp_path / 'back.db'}")
            db.upgrade(store)
            log.engine = store
            assert log.flush(timeout=30)
            later = log.record("after the outage", "s9", None, False, [], "v1")
            assert log.flush(timeout=30)
        assert [get_search(store, i) is not None for i in ids] == [True, True, True, False, False, False]
        assert get_search(store, later)["query"] == "after the outage"
        assert "backlog waiting for the database is full) works again" in caplog.text
        assert "failed attempts: 3" in caplog.text  # the three searches not logged
    finally:
        log.close()


def test_stopping_during_an_outage_is_quick_and_counts_what_is_lost(caplog):
    """Each waiting batch used to get its own tries at close: minutes for a large backlog, and
    the count of lost searches was only logged for the batches tried before the join gave up."""
    from deflect.events import SearchLog

    log = SearchLog(dead_engine(), linger=0.0, max_batch=10)
    for n in range(95):
        log.record(f"question {n}", f"s{n}", None, False, [], "v1")
    with caplog.at_level(logging.ERROR, logger="deflect.events"):
        started = time.monotonic()
        log.close()
        assert time.monotonic() - started < 10
    lost = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert lost == ["search log: 95 searches not written: the database was away when the server stopped"]
    assert not log._thread.is_alive()


# --- HTTP while the database is away (in-process server, engine on a dead port) ---------------


def test_http_answers_while_the_database_is_away(settings_factory, tiny_kb, caplog):
    from deflect.runtime import Runtime
    from deflect.web import create_app

    settings = settings_factory(kb_dir=str(tiny_kb))
    runtime = Runtime(settings, sync=False)
    app = create_app(settings, runtime)

    def use(engine: sa.Engine) -> None:  # every holder of the engine: the runtime, its search log, the board
        runtime.db = runtime.search_log.engine = app.extensions["deflect_board"].db = engine

    with serve_app(app) as base:
        before = requests.get(f"{base}/healthz", timeout=30).json()
        assert before["status"] == "ok" and before["database"] == "ok"
        search_id = requests.post(f"{base}/api/suggest", json={"query": "refund"}, timeout=30).json()["search_id"]
        runtime.search_log.flush()
        healthy = runtime.db
        use(dead_engine())
        try:
            caplog.clear()
            with caplog.at_level(logging.INFO):
                health = requests.get(f"{base}/healthz", timeout=30)
                assert health.status_code == 200
                assert health.json() | {"index_version": None} == before | {
                    "status": "degraded", "database": "unavailable", "index_version": None}
                found = requests.post(f"{base}/api/suggest", json={"query": "connect slack"}, timeout=30)
                assert found.status_code == 200 and found.json()["results"][0]["id"] == "integrations/slack"
                calls = [
                    ("post", "/api/events", {"search_id": search_id, "type": "ticket_created"}),
                    ("get", "/api/ideas", None),
                    ("post", "/api/ideas/dark-mode/vote", {}),
                    ("get", "/api/aliases", None),
                    ("get", "/api/outbox", None),
                    ("get", "/api/metrics", None),
                ]
                for method, path, body in calls:
                    answer = requests.request(method, base + path, json=body, headers=ADMIN, timeout=30)
                    assert answer.status_code == 503, (path, answer.text)
                    assert answer.headers["Retry-After"] == "5"
                    assert answer.json()["error"]["code"] == "database_unavailable", answer.text
                page = requests.get(f"{base}/ideas", timeout=30)  # a person's browser gets a page
                assert page.status_code == 503 and page.headers["Retry-After"] == "5"
                assert page.headers["Content-Type"].startswith("text/html") and "Back in a moment" in page.text
                calls.append(("get", "/ideas", None))
            web = [r for r in caplog.records if r.name == "deflect.web.errors"]
            assert len(web) == len(calls), [r.getMessage() for r in web]
            for record, (method, path, _) in zip(web, calls):
                assert record.levelname == "WARNING" and record.exc_info is None
                assert record.getMessage().startswith(f"{method.upper()} {path}: 503, database unavailable: ")
                assert "\n" not in record.getMessage()
            assert not any(r.exc_info for r in caplog.records if r.name.startswith("deflect.web"))
        finally:
            use(healthy)
        assert requests.get(f"{base}/healthz", timeout=30).json()["database"] == "ok"
        again = requests.post(f"{base}/api/events", json={"search_id": search_id, "type": "ticket_created"}, timeout=30)
        assert again.status_code == 202, again.text
    runtime.close()
    runtime.db.dispose()


# --- a real PostgreSQL server stopped under a real `deflect serve` ---------------------------------


@pytest.fixture
def own_postgres():
    """A PostgreSQL server for this test alone (it is stopped mid-test): never the session's shared one."""
    if not find_pg_bin("initdb") or not find_pg_bin("pg_ctl"):
        if os.environ.get("DEFLECT_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL binaries not found but DEFLECT_REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL not installed (apt-get install postgresql)")
    server = LocalPostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()


def _event(base: str, search_id: str, kind: str = "ticket_created", timeout: float = 30) -> requests.Response:
    return requests.post(f"{base}/api/events", json={"search_id": search_id, "type": kind}, timeout=timeout)


def _retrying_event(base: str, search_id: str, tries: int = 3) -> requests.Response:
    """What the widget does: on 503, try again (here after 1 s, well under Retry-After)."""
    for _ in range(tries):
        answer = _event(base, search_id)
        if answer.status_code != 503:
            return answer
        time.sleep(1.0)
    return answer


def test_postgres_stopped_and_started_under_a_serving_process(tmp_path, own_postgres):
    url = fresh_database(own_postgres.url)
    write_kb(tmp_path / "kb", TINY_KB)
    server = Server(server_env(tmp_path, url), tmp_path / "serve.log")
    acknowledged: list[int] = []
    try:
        before = server.wait_healthy()
        assert before["status"] == "ok" and before["database"] == "ok"
        first = requests.post(f"{server.base}/api/suggest", json={"query": "refund"}, timeout=30).json()["search_id"]
        answer = requests.post(f"{server.base}/api/events", timeout=30,
                               json={"search_id": first, "type": "click", "item_id": "no/such-article"})
        assert answer.status_code == 404  # the search was read, the item looked up: a working database's answer
        answer = _event(server.base, first)
        assert answer.status_code == 202, answer.text
        acknowledged.append(answer.json()["event_id"])

        own_postgres.stop()
        health = requests.get(f"{server.base}/healthz", timeout=10)
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "degraded" and health.json()["database"] == "unavailable"
        assert health.json()["ideas"] == before["ideas"] and health.json()["articles"] == before["articles"]
        during = []
        for query in ("connect slack", "forgot my password", "refund please"):
            found = requests.post(f"{server.base}/api/suggest", json={"query": query}, timeout=10)
            assert found.status_code == 200, found.text
            during.append(found.json()["search_id"])
        for search_id in (first, during[0]):
            refused = _event(server.base, search_id)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["code"] == "database_unavailable"
        for path in ("/api/ideas", "/api/aliases", "/api/outbox"):
            answer = requests.get(server.base + path, headers=ADMIN, timeout=10)
            assert answer.status_code == 503, (path, answer.text)

        # Nine admins refresh the metrics at once on an 8-thread server: each must fail fast
        # (it waited up to 60 s for the search writer), and suggest must keep answering meanwhile.
        metrics: list[tuple[int, float]] = []

        def metrics_call() -> None:
            started = time.monotonic()
            status = requests.get(f"{server.base}/api/metrics", headers=ADMIN, timeout=60).status_code
            metrics.append((status, time.monotonic() - started))

        threads = [threading.Thread(target=metrics_call) for _ in range(9)]
        for thread in threads:
            thread.start()
        found = requests.post(f"{server.base}/api/suggest", json={"query": "slack channel"}, timeout=15)
        assert found.status_code == 200
        during.append(found.json()["search_id"])
        for thread in threads:
            thread.join(timeout=60)
        assert len(metrics) == 9 and {status for status, _ in metrics} == {503}, metrics
        assert max(seconds for _, seconds in metrics) < 15, metrics

        # The sync loop (every 0.5 s, after any calibration it had to do) meets the outage too.
        noticed = wait_for(lambda: "sync with the database failed" in server.log_path.read_text(), timeout=60)
        assert noticed, server.log()
        own_postgres.start()
        back = wait_for(lambda: server.health()["database"] == "ok", timeout=30, interval=0.3)
        assert back, server.log()
        assert server.health()["status"] == "ok"
        # Every search answered during the outage reaches the database: events on them are taken.
        for search_id in (first, *during):
            answer = _retrying_event(server.base, search_id)
            assert answer.status_code == 202, answer.text
            acknowledged.append(answer.json()["event_id"])
        for path in ("/api/ideas", "/api/aliases", "/api/outbox", "/api/metrics"):
            answer = requests.get(server.base + path, headers=ADMIN, timeout=30)
            assert answer.status_code == 200, (path, answer.text)
        assert answer.json()["events"]["ticket_created"] == len(set(acknowledged))  # `first` got its ticket before the outage: the second is a duplicate
        assert answer.json()["totals"]["searches"] == 1 + len(during)
        # The sync loop notices on its next tick (every 0.5 s here): wait for it before stopping.
        recovered = wait_for(lambda: "sync with the database works again" in server.log_path.read_text(), timeout=15)
        assert recovered, server.log()
    finally:
        server.stop()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            stored = {row[0] for row in conn.execute(sa.text("SELECT id FROM events"))}
            searches = conn.execute(sa.text("SELECT count(*) FROM searches")).scalar()
    finally:
        engine.dispose()
    assert set(acknowledged) <= stored
    assert searches == 1 + len(during)
    log = server.log_path.read_text(errors="replace")
    assert "unhandled error" not in log and "internal_error" not in log
    # One line per endpoint every 10 s, not one per request: nine metrics calls at once are one line.
    for endpoint in ("POST /api/events", "GET /api/ideas", "GET /api/aliases", "GET /api/outbox", "GET /api/metrics"):
        assert f"{endpoint}: 503, database unavailable" in log, (endpoint, log[-3000:])
    assert log.count("GET /api/metrics: 503") <= 2, log[-3000:]
    # The sync loop and the search writer: one traceback each (a chained pair) for the whole outage,
    # then one line each when the database is back.
    assert log.count("sync with the database failed") == 1, log[-3000:]
    assert log.count("writing searches to the database failed") == 1, log[-3000:]
    records = re.split(r"\n(?=[^\n]*\b(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (?:deflect|werkzeug)[\w.]*: )", log)
    with_traceback = sorted(record.splitlines()[0].split(": ", 1)[1] for record in records if "Traceback" in record)
    assert with_traceback == ["search log: writing searches to the database failed", "sync with the database failed"]
    assert log.count("sync with the database works again") == 1, log[-3000:]
    assert log.count("writing searches to the database works again") == 1, log[-3000:]


def test_a_refused_login_or_missing_database_is_a_mistake_to_fix_not_an_outage(postgres_url):
    """After a password rotation deflect must not answer "try again shortly" forever."""
    url = sa.make_url(postgres_url)
    for wrong in (url.set(database="no_such_database_here"), url.set(username="no_such_role_here")):
        engine = sa.create_engine(wrong)
        try:
            with pytest.raises(sa.exc.OperationalError) as caught, engine.connect():
                pass
        finally:
            engine.dispose()
        assert "does not exist" in str(caught.value.orig)
        assert not is_database_unavailable(caught.value)
    assert is_database_unavailable(refused_error())  # a server that is not there is an outage


def test_the_candidate_check_logs_an_outage_once_not_every_retry(tmp_path, settings_factory, monkeypatch, caplog):
    """The board's check "does a new article answer a candidate?" retries every 30 s while the
    database is away; it used to log a traceback at each retry."""
    from deflect import board as board_module
    from deflect.runtime import Runtime

    write_kb(tmp_path / "kb", TINY_KB)
    runtime = Runtime(settings_factory(), sync=False)
    the_board = board_module.Board(runtime)
    calls = []

    def check_answered():
        calls.append(time.monotonic())
        if len(calls) <= 5:
            raise refused_error()
        return 0

    monkeypatch.setattr(the_board, "check_answered", check_answered)
    monkeypatch.setattr(board_module, "RETRY_CHECK_SECONDS", 0.01)
    caplog.set_level(logging.INFO, logger="deflect.board")
    try:
        the_board.watch_index()
        wait_for(lambda: len(calls) >= 6, timeout=10)
        wait_for(lambda: any("works again" in r.getMessage() for r in caplog.records), timeout=5)
    finally:
        the_board.close()
        runtime.close()
        runtime.db.dispose()
    lines = [r for r in caplog.records if r.name == "deflect.board"]
    assert [r.getMessage() for r in lines if r.exc_info] == ["checking candidates against the new index failed"]
    assert len(lines) == 2, [r.getMessage() for r in lines]  # the first failure, then the recovery
    assert "works again after" in lines[1].getMessage() and "failed attempts: 5" in lines[1].getMessage()


def test_the_health_probe_answers_within_its_wait_while_a_query_hangs():
    """A cut network holds a query for up to deflect.db's TCP timeout (15 s); /healthz must not."""
    from deflect.outage import DatabaseProbe

    release, calls = threading.Event(), []

    def count():
        calls.append(1)
        release.wait(10)
        return 7

    probe = DatabaseProbe(count)
    started = time.monotonic()
    assert probe.run(wait=0.2) is None
    assert probe.run(wait=0.2) is None
    assert time.monotonic() - started < 1.0
    assert len(calls) == 1  # the hanging query is waited on again, not started twice
    release.set()
    assert probe.run(wait=2) == 7 and len(calls) == 1  # the same query's answer
    assert probe.run(wait=2) == 7 and len(calls) == 2  # then a fresh one


def test_the_health_probe_says_unavailable_for_an_outage_and_raises_a_bug():
    from deflect.outage import DatabaseProbe

    refused = refused_error()

    def unreachable():
        raise refused

    assert DatabaseProbe(unreachable).run(wait=2) is None

    def bug():
        raise ValueError("a bug in the query")

    with pytest.raises(ValueError, match="a bug in the query"):
        DatabaseProbe(bug).run(wait=2)


def test_healthz_says_degraded_at_once_while_the_database_hangs(tmp_path, settings_factory):
    from deflect.runtime import Runtime

    write_kb(tmp_path / "kb", TINY_KB)
    runtime = Runtime(settings_factory(), sync=False)
    release = threading.Event()
    try:
        healthy = runtime.health()
        assert healthy["status"] == "ok" and healthy["database"] == "ok"
        runtime._health_probe.query = lambda: release.wait(30)  # a query on a cut network
        started = time.monotonic()
        health = runtime.health()
        assert time.monotonic() - started < 3.0  # HEALTH_WAIT_SECONDS, not the query's 30 s
        assert health["status"] == "degraded" and health["database"] == "unavailable"
        assert health["ideas"] == healthy["ideas"] and health["articles"] == 3
    finally:
        release.set()
        runtime.close()
        runtime.db.dispose()
