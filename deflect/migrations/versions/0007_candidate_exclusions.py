"""candidate_exclusions: the wordings of questions an admin left out when promoting or merging an
idea candidate, so that their askers are neither recorded as the idea's requesters (then or
later) nor told about it. Decisions made before this revision were not recorded.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidate_exclusions",
        sa.Column("candidate_id", sa.String(40), sa.ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("query_key", sa.Text, primary_key=True),
        sa.Column("excluded_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("candidate_exclusions")
