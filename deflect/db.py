"""SQLAlchemy Core tables and the Alembic upgrade that creates them (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy as sa

from .errors import ConfigError, DeflectError, mask_url

metadata = sa.MetaData()

ideas = sa.Table(
    "ideas",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(20), nullable=False, server_default="open"),
    sa.Column("merged_into", sa.String(200), nullable=True),
    sa.Column("votes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("shipped_at", sa.Float, nullable=True),  # when it became shipped (migration 0008)
)

idea_votes = sa.Table(
    "idea_votes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idea_id", sa.String(200), sa.ForeignKey("ideas.id"), nullable=False, index=True),
    sa.Column("customer_id", sa.String(200), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("mrr", sa.Float, nullable=True),
    sa.Column("search_id", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

searches = sa.Table(
    "searches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("session", sa.String(200), nullable=True, index=True),
    sa.Column("locale", sa.String(35), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("answered", sa.Boolean, nullable=False),
    sa.Column("top_score", sa.Float, nullable=True),
    sa.Column("index_version", sa.String(64), nullable=True),
)

sa.Index("ix_searches_session_created", searches.c.session, searches.c.created_at)

search_results = sa.Table(
    "search_results",
    metadata,
    sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("item_type", sa.String(10), nullable=False),
    sa.Column("item_id", sa.String(200), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
)


events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), nullable=False, index=True),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("item_type", sa.String(10), nullable=True),
    sa.Column("item_id", sa.String(200), nullable=True),
    sa.Column("session", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("customer_id", sa.String(200), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("mrr", sa.Float, nullable=True),
)

# A learned alias: a query that users confirmed (helpful events, source "feedback") answers an
# item, or a question of an idea candidate an admin promoted or merged into an idea (source
# "review", candidate_id says which), or a confirmed answer an admin imported (source "import",
# `deflect aliases import`). Its vector is stored so every server process can load it without
# re-encoding.
aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_type", sa.String(10), nullable=False),
    sa.Column("item_id", sa.String(200), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("query_key", sa.String(1000), nullable=False),
    sa.Column("confirmations", sa.Integer, nullable=False, server_default="0"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("model", sa.String(300), nullable=True),
    sa.Column("vector", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("source", sa.String(20), nullable=False, server_default="feedback"),
    sa.Column("candidate_id", sa.String(40), nullable=True),
    sa.UniqueConstraint("item_type", "item_id", "query_key", name="uq_alias_item_query"),
    # An id is never given twice (SQLite would reuse a deleted highest id, and a retried DELETE of
    # it would remove an unrelated alias); PostgreSQL's sequence already never does. Migration 0010.
    sqlite_autoincrement=True,
)

alias_confirmations = sa.Table(
    "alias_confirmations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("search_id", sa.String(64), nullable=False),
    sa.Column("session", sa.String(200), nullable=True, index=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("client", sa.String(200), nullable=True, index=True),
)

# Small shared counters (e.g. the alias generation) that server processes poll to notice
# changes made by other processes.
sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("text", sa.String(300), nullable=True),
)


def sync_counter(conn_or_engine, name: str) -> int:
    """A shared counter's value (0 before its first bump)."""
    query = sa.select(sync_state.c.value).where(sync_state.c.name == name)
    if isinstance(conn_or_engine, sa.Engine):
        with conn_or_engine.connect() as conn:
            value = conn.execute(query).scalar()
    else:
        value = conn_or_engine.execute(query).scalar()
    return int(value or 0)


def bump_sync_counter(conn: sa.Connection, name: str) -> None:
    """Count a change, in the writer's transaction, so other processes notice it on their next poll."""
    updated = conn.execute(
        sync_state.update().where(sync_state.c.name == name).values(value=sync_state.c.value + 1)
    ).rowcount
    if not updated:
        conn.execute(sync_state.insert().values(name=name, value=1))


# Text no database here can store: NUL (PostgreSQL text) and lone surrogates (not encodable as
# UTF-8; JSON's "\ud800" escape makes one). Refused before any write, by the API and by imports.
UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")

_EXAMPLE_URLS = "sqlite:///data/deflect.db or postgresql+psycopg://user:password@host/database"
CONNECT_TIMEOUT_SECONDS = 5
# A network cut (packets dropped, no reset) would hold a pooled connection's query for TCP's
# retransmission timeout, about 15 minutes: libpq gives up on unacknowledged data after 15 s
# and probes an idle connection after 10 s (then every 5 s, 3 times). A URL's own values win.
POSTGRES_TCP_ARGS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 15000}


def make_engine(database_url: str) -> sa.Engine:
    """Create the engine; SQLite gets WAL, a busy timeout and its folder created.

    A URL that is not SQLAlchemy's, or names a driver that is not installed, is a ConfigError.
    """
    try:
        url = sa.make_url(database_url)
        url.get_dialect()  # loads the dialect's plugin: postgres:// fails here
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
        scheme = database_url.split(":", 1)[0]
        hint = "postgresql+psycopg://" if scheme.startswith("postgres") else _EXAMPLE_URLS
        raise ConfigError(f"setting database_url: {mask_url(database_url)} is not a database URL deflect can use; use {hint}") from None
    try:
        return _create_engine(url)
    except ImportError as exc:  # the driver (DBAPI module) is not installed
        raise ConfigError(
            f"setting database_url: {url.render_as_string(hide_password=True)} needs the Python module "
            f"{exc.name or exc}, which is not installed; use {_EXAMPLE_URLS} (pip install 'deflect[postgres]')"
        ) from None


def create_private(path: Path) -> None:
    """Create the file readable by its owner only, if it does not exist yet.

    The store holds what people typed and requesters' emails; SQLite gives its -wal and -shm
    files the database file's own mode. An existing file keeps the mode an operator gave it.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _create_engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            if not url.database.startswith("file:"):  # a URI names its file (and mode) itself
                create_private(Path(url.database))
        # hide_parameters: an error's message must not carry a row (someone's question, an email) into the log.
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # Transactions are begun by hand (below), so the driver must not begin its own.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Writers take the lock up front (BEGIN IMMEDIATE) so that a read-then-write
            # transaction waits for the busy timeout instead of failing "database is locked".
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        return engine
    # An unreachable server (a network cut, not a refused connection) must not hold a request
    # for the driver's default of minutes; a URL that sets connect_timeout keeps its own.
    connect_args = {}
    if url.get_driver_name() in ("psycopg", "psycopg2"):
        wanted = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} | POSTGRES_TCP_ARGS
        connect_args = {key: value for key, value in wanted.items() if key not in url.query}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True)


def writing(engine: sa.Engine):
    """`with writing(engine) as conn:` a write transaction (BEGIN IMMEDIATE on SQLite)."""
    return engine.execution_options(write=True).begin()


# PostgreSQL advisory-lock keys: one per kind of writer that must run alone across processes.
ADVISORY_LOCKS = {
    "migrations": 7260001, "pool_vectors": 7260002, "idea_seed": 7260003, "candidates": 7734201, "idea_titles": 7260004,
}


def advisory_lock(conn: sa.Connection, name: str) -> None:
    """Hold lock `name` until the transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCKS[name]})


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision` (run on every start; a no-op when current)."""
    from alembic import command

    config = _alembic_config()
    with writing(engine) as connection:
        advisory_lock(connection, "migrations")  # several processes may start at once: one migrates
        _refuse_unknown_revision(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _refuse_unknown_revision(connection: sa.Connection) -> None:
    """A database at a revision this deflect has no migration for was written by a newer deflect."""
    from alembic.runtime.migration import MigrationContext

    known = known_revisions()
    for current in MigrationContext.configure(connection).get_current_heads():
        if current not in known:
            raise DeflectError(
                f"the database {connection.engine.url.render_as_string(hide_password=True)} is at schema revision "
                f"{current!r}, which this deflect (schema {head_revision()}) does not know: it was written "
                "by a newer deflect. Run that version (or newer), or set database_url to another database"
            )


def _alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return config


def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    """The schema revision this deflect's migrations end at."""
    return _scripts().get_current_head()


def known_revisions() -> set[str]:
    """Every schema revision this deflect has a migration for."""
    return {script.revision for script in _scripts().walk_revisions()}


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
