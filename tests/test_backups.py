"""The README's backup and restore commands, run as written: SQLite's online backup while a writer
is open, and pg_dump / pg_restore into a fresh database and over the same one. The figures after a
restore are the figures before it."""

from __future__ import annotations

import sqlite3
import subprocess
import time

import sqlalchemy as sa
from server_support import find_pg_bin, fresh_database

from deflect import db
from deflect.events import insert_event, record_search
from deflect.metrics import compute_metrics


def fill(engine: sa.Engine) -> dict:
    """A few searches and events; returns the metrics they make."""
    for n, (query, kind) in enumerate([("I forgot my password", "click"), ("refund please", "ticket_created"),
                                       ("gantt chart", None), ("invite my team", "helpful")]):
        search_id = record_search(engine, query, f"s{n}", None, kind != "ticket_created", [], "v1")
        if kind:
            with db.writing(engine) as conn:
                insert_event(conn, {"id": search_id, "session": f"s{n}"}, kind, "article" if kind != "ticket_created" else None,
                             "account/reset-password" if kind != "ticket_created" else None,
                             {"email": "a@example.com"} if kind == "ticket_created" else None)
    return figures(engine)


def figures(engine: sa.Engine) -> dict:
    return compute_metrics(engine, now=time.time() + 3600)["totals"]


def test_sqlite_online_backup_restores_the_same_figures(tmp_path):
    live = tmp_path / "data" / "deflect.db"
    engine = db.make_engine(f"sqlite:///{live}")
    db.upgrade(engine)
    before = fill(engine)
    # The README's one-liner, while the engine (a running server) still holds the database open.
    src, dst = sqlite3.connect(live), sqlite3.connect(tmp_path / "backup.db")
    src.backup(dst)
    dst.close()
    src.close()
    engine.dispose()
    restored = tmp_path / "restored" / "deflect.db"
    restored.parent.mkdir()
    (tmp_path / "backup.db").rename(restored)
    again = db.make_engine(f"sqlite:///{restored}")
    db.upgrade(again)
    assert figures(again) == before and before["searches"] == 4 and before["tickets"] == 1
    again.dispose()


def test_pg_dump_and_restore_as_the_readme_says(postgres_server, tmp_path):
    source = fresh_database(postgres_server)
    engine = db.make_engine(source)
    db.upgrade(engine)
    before = fill(engine)
    engine.dispose()
    dump = tmp_path / "deflect.dump"
    plain = source.replace("+psycopg", "")  # "the URL without +psycopg"
    subprocess.run([find_pg_bin("pg_dump"), "--format=custom", f"--file={dump}", plain], check=True, timeout=120)
    for target in (fresh_database(postgres_server), source):  # a new database, and over the same one
        restored = subprocess.run([find_pg_bin("pg_restore"), "--clean", "--if-exists", f"--dbname={target.replace('+psycopg', '')}",
                                   str(dump)], capture_output=True, text=True, timeout=120)
        assert restored.returncode == 0 and not restored.stderr, restored.stderr
        again = db.make_engine(target)
        db.upgrade(again)
        assert figures(again) == before
        again.dispose()
