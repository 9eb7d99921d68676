"""candidate_history: the members a reviewed idea candidate had when a rebuild retired its id, so a
later group made mostly of them takes the id and the review decision back.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidate_history",
        sa.Column("candidate_id", sa.String(40), sa.ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("candidate_history")
