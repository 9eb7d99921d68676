"""SQLAlchemy Core tables and the Alembic upgrade that creates them (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

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

search_results = sa.Table(
    "search_results",
    metadata,
    sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("item_type", sa.String(10), nullable=False),
    sa.Column("item_id", sa.String(200), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
)


def make_engine(database_url: str) -> sa.Engine:
    """Create the engine; SQLite gets WAL, a busy timeout and its folder created."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision` (run on every start; a no-op when current)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
