"""aliases.id is never handed out twice on SQLite (AUTOINCREMENT), as on PostgreSQL (a sequence).

Without AUTOINCREMENT, SQLite gives a new row the highest id + 1: once the newest alias was
deleted, the next one took its id, and a retried or stale `DELETE /api/aliases/<id>` (or
`deflect aliases delete`) removed that unrelated alias. SQLite cannot add AUTOINCREMENT to a
table, so the table is rebuilt (batch mode: copied with its rows, ids, defaults and unique
constraint, the old one dropped, the copy renamed). From then on SQLite's sqlite_sequence
remembers the highest id ever given, starting from the highest one present now: an id deleted
before this revision, above every remaining one, can still be given once more.

Dropping the old table would delete every alias_confirmations row (their foreign key cascades,
and foreign keys cannot be turned off inside the migration's transaction), so those rows are
set aside first and put back, ids unchanged. Nothing to do on PostgreSQL.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_SAVED = "_alias_confirmations_0010"


def upgrade() -> None:
    _rebuild_aliases(autoincrement=True)


def downgrade() -> None:
    _rebuild_aliases(autoincrement=False)


def _rebuild_aliases(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    columns = ", ".join(f'"{c["name"]}"' for c in sa.inspect(bind).get_columns("alias_confirmations"))
    op.execute(f"CREATE TEMP TABLE {_SAVED} AS SELECT {columns} FROM alias_confirmations")
    op.execute("DELETE FROM alias_confirmations")
    with op.batch_alter_table("aliases", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass
    op.execute(f"INSERT INTO alias_confirmations ({columns}) SELECT {columns} FROM {_SAVED}")
    op.execute(f"DROP TABLE {_SAVED}")
