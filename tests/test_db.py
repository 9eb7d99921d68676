"""Migrations from an empty database and from the previous schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from deflect import db


def test_upgrade_from_empty_creates_every_table(database_url):
    engine = db.make_engine(database_url)
    assert db.current_revision(engine) is None
    db.upgrade(engine)
    assert db.current_revision(engine) == "0010"
    tables = set(sa.inspect(engine).get_table_names())
    assert tables >= {"ideas", "idea_votes", "searches", "search_results", "events", "aliases", "alias_confirmations", "sync_state"}
    db.upgrade(engine)  # idempotent: serve runs it on every start
    assert db.current_revision(engine) == "0010"
    engine.dispose()


def test_migrations_build_exactly_the_tables_the_code_declares(database_url):
    """The tables, columns, types, keys and indexes the migrations create are those deflect's
    SQLAlchemy tables declare: a table changed in code without a migration (or the reverse) fails."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from deflect import aliases, candidates, ideas, outbox, votes  # noqa: F401 (their tables join db.metadata)

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        assert compare_metadata(context, db.metadata) == []
    engine.dispose()


def test_upgrade_keeps_data_written_under_the_previous_schema(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0001")
    assert "events" not in sa.inspect(engine).get_table_names()
    now = time.time()
    with engine.begin() as conn:
        conn.execute(db.ideas.insert().values(id="dark-mode", title="Dark mode", created_at=now, updated_at=now))
        conn.execute(
            sa.text(
                "INSERT INTO searches (id, query, session, locale, created_at, answered, top_score, index_version) "
                "VALUES (:id, :q, :s, NULL, :t, :a, 0.7, 'v1')"
            ),
            {"id": "a" * 32, "q": "old question", "s": "old-session", "t": now, "a": True},
        )
    db.upgrade(engine)
    assert db.current_revision(engine) == "0010"
    with db.writing(engine) as conn:
        assert conn.execute(sa.select(db.searches.c.query)).scalar_one() == "old question"
        assert conn.execute(sa.select(db.ideas.c.title)).scalar_one() == "Dark mode"
        conn.execute(db.events.insert().values(search_id="a" * 32, type="click", item_id="x", created_at=now))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.events)).scalar_one() == 1
    engine.dispose()


def test_postgres_connections_give_up_on_a_silent_network_within_seconds(postgres_url):
    """libpq's keepalives and tcp_user_timeout reach the real connection (a cut network would
    otherwise hold a query for TCP's ~15 minute retransmission timeout); the URL's own win."""
    from deflect.db import make_engine

    def parameters(url: str) -> dict:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                return conn.connection.dbapi_connection.info.get_parameters()
        finally:
            engine.dispose()

    params = parameters(postgres_url)
    assert params["tcp_user_timeout"] == "15000"
    keepalives = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count")
    assert tuple(params[k] for k in keepalives) == ("1", "10", "5", "3")
    assert params["connect_timeout"] == "5"
    separator = "&" if "?" in postgres_url else "?"
    mine = parameters(f"{postgres_url}{separator}tcp_user_timeout=4000&connect_timeout=2")
    assert (mine["tcp_user_timeout"], mine["connect_timeout"], mine["keepalives"]) == ("4000", "2", "1")


def test_migration_0006_keeps_alias_confirmations_and_records_clients_from_then_on(database_url):
    from deflect import aliases

    engine = db.make_engine(database_url)
    db.upgrade(engine, "0005")
    with db.writing(engine) as conn:
        conn.execute(sa.text(
            "INSERT INTO aliases (item_type, item_id, query, query_key, confirmations, active, created_at, updated_at) "
            "VALUES ('article', 'billing/refunds', 'Money back?', 'money back?', 1, :no, :t, :t)"), {"no": False, "t": time.time()})
        conn.execute(sa.text("INSERT INTO alias_confirmations (alias_id, search_id, session, created_at) "
                             "VALUES (1, 'old-search', 's-old', :t)"), {"t": time.time()})
    db.upgrade(engine)
    assert db.current_revision(engine) == "0010"
    policy = aliases.AliasPolicy(min_confirmations=2, per_session_hour=5, per_client_hour=1)
    search = {"id": "new-search", "query": "Money back?"}
    with db.writing(engine) as conn:
        learned = aliases.confirm(conn, search, "article", "billing/refunds", "s-new", policy, None, "m", client="10.0.0.7")
        # the same address under another session name: over its hourly limit of one
        limited = aliases.confirm(conn, search, "article", "billing/refunds", "s-other", policy, None, "m", client="10.0.0.7")
    assert (learned["status"], limited["status"]) == ("learned", "rate_limited")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.alias_confirmations.c.session, db.alias_confirmations.c.client)
                            .order_by(db.alias_confirmations.c.id)).all()
    assert [tuple(r) for r in rows] == [("s-old", None), ("s-new", "10.0.0.7")]
    engine.dispose()


def test_migration_0008_dates_ideas_shipped_before_it_by_their_last_update(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0007")
    with db.writing(engine) as conn:
        conn.execute(db.ideas.insert(), [
            {"id": "dark-mode", "title": "Dark mode", "status": "shipped", "created_at": 1.0, "updated_at": 5.0},
            {"id": "gantt", "title": "Gantt", "status": "open", "created_at": 1.0, "updated_at": 7.0},
        ])
    db.upgrade(engine)
    with engine.connect() as conn:
        shipped = dict(conn.execute(sa.select(db.ideas.c.id, db.ideas.c.shipped_at)).all())
    assert shipped == {"dark-mode": 5.0, "gantt": None}
    engine.dispose()


def test_migrations_0008_and_0007_downgrade_with_votes_and_exclusions_in_place(database_url):
    """A rollback to 0006 keeps the ideas and their votes (SQLite copying the ideas table in
    batch mode failed on the votes' foreign key)."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    from deflect import candidates

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    now = time.time()
    with db.writing(engine) as conn:
        conn.execute(db.ideas.insert().values(id="gantt", title="Gantt", status="shipped", shipped_at=now,
                                              created_at=now, updated_at=now))
        conn.execute(db.idea_votes.insert().values(idea_id="gantt", email="a@example.com", created_at=now))
        conn.execute(candidates.candidates.insert().values(id="c1", label="gantt", status="promoted", idea_id="gantt",
                                                           created_at=now, updated_at=now))
        conn.execute(candidates.candidate_exclusions.insert().values(candidate_id="c1", query_key="x", excluded_at=now))
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).with_name("migrations")))
    with db.writing(engine) as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
    assert db.current_revision(engine) == "0006"
    inspector = sa.inspect(engine)
    assert "candidate_exclusions" not in inspector.get_table_names()
    assert "shipped_at" not in {c["name"] for c in inspector.get_columns("ideas")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT email FROM idea_votes WHERE idea_id = 'gantt'")).scalar_one() == "a@example.com"
    db.upgrade(engine)  # and up again
    assert db.current_revision(engine) == "0010"
    engine.dispose()


def test_a_new_sqlite_store_and_its_wal_are_private_to_their_owner(tmp_path):
    """It holds what people typed and requesters' emails: 0600 whatever the umask; an existing file keeps its mode."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        engine = db.make_engine(f"sqlite:///{tmp_path / 'new' / 'deflect.db'}")
        db.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(db.sync_state.insert().values(name="x", value=1))
        files = sorted((tmp_path / "new").iterdir())
        assert [f.name for f in files] == ["deflect.db", "deflect.db-shm", "deflect.db-wal"]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
        engine.dispose()
        shared = tmp_path / "shared.db"
        shared.touch(mode=0o640)
        db.make_engine(f"sqlite:///{shared}").dispose()
        assert stat.S_IMODE(shared.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_database_error_carries_no_question_into_the_log(store):
    """SQLAlchemy puts a failed statement's parameters in its message, which the log prints."""
    from deflect.events import record_search

    with store.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE search_results RENAME TO search_results_away")
        conn.exec_driver_sql("ALTER TABLE searches RENAME TO searches_away")
    with pytest.raises(sa.exc.DBAPIError) as caught:
        record_search(store, "Bob Secretname wants a refund", "s-bob", None, True,
                      [{"type": "article", "id": "billing/refunds", "score": 0.9}], "v1")
    assert "Secretname" not in str(caught.value) and "s-bob" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)


def test_a_logged_database_error_quotes_no_row(store, caplog):
    """PostgreSQL's DETAIL quotes the failing row ("Failing row contains (...)"): someone's question.
    A traceback is still logged, the error's first line with it."""
    import logging

    from deflect.outage import FailureLog, log_failure

    with pytest.raises(sa.exc.DBAPIError) as caught, store.begin() as conn:
        conn.execute(sa.text("INSERT INTO searches (id, query, created_at, answered) VALUES ('x', :q, 1, NULL)"),
                     {"q": "Bob Secretname wants a refund"})
    logger = logging.getLogger("deflect.test_db")
    with caplog.at_level(logging.WARNING, logger="deflect.test_db"):
        log_failure(logger, logging.ERROR, "unhandled error", caught.value)
        FailureLog(logger, "writing searches").failed(caught.value)
    text = caplog.text
    assert "Secretname" not in text and text.count("Traceback (most recent call last)") == 2
    assert "writing searches failed" in text and ("NotNullViolation" in text or "IntegrityError" in text), text
