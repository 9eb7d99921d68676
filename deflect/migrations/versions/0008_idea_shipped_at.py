"""ideas.shipped_at: when an idea became shipped, so that questions asked about it since, which
no article answers yet, are content gaps again. Ideas shipped before this revision get their
last update time, the closest record there is.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ideas") as batch:
        batch.add_column(sa.Column("shipped_at", sa.Float, nullable=True))
    op.execute("UPDATE ideas SET shipped_at = updated_at WHERE status = 'shipped'")


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite 3.35+, PostgreSQL): batch mode would copy the table, and dropping the
    # old copy fails on SQLite while idea_votes rows point at it (foreign keys are on).
    op.execute("ALTER TABLE ideas DROP COLUMN shipped_at")
