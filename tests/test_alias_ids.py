"""A learned alias's id is never given to another alias, so a retried or stale delete of it
cannot remove an unrelated one; migration 0010 makes it so on SQLite databases made before
(AUTOINCREMENT), keeping every alias and confirmation. On a SQLite file and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from deflect import aliases, db


def _add(conn, item_id: str, query: str, **values) -> int:
    now = time.time()
    row = {"item_type": "article", "item_id": item_id, "query": query, "query_key": query.lower(),
           "confirmations": 1, "active": False, "created_at": now, "updated_at": now} | values
    return conn.execute(db.aliases.insert().values(**row)).inserted_primary_key[0]


def _confirm(conn, alias_id: int, session: str, client: str | None = None) -> None:
    conn.execute(db.alias_confirmations.insert().values(
        alias_id=alias_id, search_id=f"search-{session}", session=session, client=client, created_at=time.time()))


def _rows(engine) -> tuple[list, list]:
    with engine.connect() as conn:
        return (
            [tuple(r) for r in conn.execute(sa.select(db.aliases).order_by(db.aliases.c.id))],
            [tuple(r) for r in conn.execute(sa.select(db.alias_confirmations).order_by(db.alias_confirmations.c.id))],
        )


def _ids(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(db.aliases.c.id).order_by(db.aliases.c.id)).scalars())


def test_a_deleted_alias_id_is_not_given_again_and_a_retried_delete_removes_nothing(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with db.writing(engine) as conn:
        first = _add(conn, "billing/refunds", "Money back?")
        newest = _add(conn, "account/close", "Close my account")
    with db.writing(engine) as conn:
        assert aliases.delete_alias(conn, newest)
    with db.writing(engine) as conn:
        another = _add(conn, "account/reset-password", "Forgot my password")
    assert another not in (first, newest) and another > newest
    with db.writing(engine) as conn:  # `DELETE /api/aliases/<newest>` sent again
        assert not aliases.delete_alias(conn, newest)
    assert _ids(engine) == [first, another]
    engine.dispose()


def _migrations() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).with_name("migrations")))
    return config


def _sqlite_schema(engine, table: str) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}).scalar_one()


def test_migration_0010_keeps_aliases_ids_and_confirmations_and_stops_reusing_ids(database_url):
    engine = db.make_engine(database_url)
    db.upgrade(engine, "0009")
    with db.writing(engine) as conn:
        kept = _add(conn, "billing/refunds", "Money back?", confirmations=2, active=True, model="m", vector=b"\x01\x02\x03\x04")
        gone = _add(conn, "billing/refunds", "Refund?")
        reviewed = _add(conn, "dark-mode", "Night theme", source="review", candidate_id="c-1", item_type="idea")
        newest = _add(conn, "account/close", "Close my account", source="import")
        for alias_id, session, client in [(kept, "s1", "10.0.0.1"), (kept, "s2", None), (gone, "s3", None), (newest, "s4", "10.0.0.4")]:
            _confirm(conn, alias_id, session, client)
        assert aliases.delete_alias(conn, gone)  # a gap in the ids
    inspector = sa.inspect(engine)
    constraints = (inspector.get_unique_constraints("aliases"), inspector.get_foreign_keys("alias_confirmations"),
                   inspector.get_indexes("alias_confirmations"))
    before = _rows(engine)
    assert len(before[0]) == 3 and len(before[1]) == 3

    db.upgrade(engine)
    assert db.current_revision(engine) == "0010"
    assert _rows(engine) == before  # every column of every row, ids included
    inspector = sa.inspect(engine)
    assert (inspector.get_unique_constraints("aliases"), inspector.get_foreign_keys("alias_confirmations"),
            inspector.get_indexes("alias_confirmations")) == constraints
    if engine.dialect.name == "sqlite":
        assert "AUTOINCREMENT" in _sqlite_schema(engine, "aliases")

    # The newest alias deleted, the next one gets a new id; a retried delete removes nothing.
    with db.writing(engine) as conn:
        assert aliases.delete_alias(conn, newest)
    with db.writing(engine) as conn:
        added = _add(conn, "account/reset-password", "Forgot my password")
        assert added > newest
        assert not aliases.delete_alias(conn, newest)
    assert _ids(engine) == [kept, reviewed, added]
    # The unique constraint and the confirmations' cascading foreign key hold on the new table.
    with pytest.raises(sa.exc.IntegrityError), db.writing(engine) as conn:
        _add(conn, "billing/refunds", "Money back?")
    with db.writing(engine) as conn:
        _confirm(conn, reviewed, "s5")
        conn.execute(db.aliases.delete().where(db.aliases.c.id == reviewed))
    assert [r[1] for r in _rows(engine)[1]] == [kept, kept]

    # Down to 0009 and up again, rows intact.
    after = _rows(engine)
    with db.writing(engine) as conn:
        config = _migrations()
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
    assert db.current_revision(engine) == "0009" and _rows(engine) == after
    if engine.dialect.name == "sqlite":
        assert "AUTOINCREMENT" not in _sqlite_schema(engine, "aliases")
    db.upgrade(engine)
    assert db.current_revision(engine) == "0010" and _rows(engine) == after
    engine.dispose()
