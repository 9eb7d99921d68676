"""aliases.source and aliases.candidate_id: where an alias came from. "feedback" is a query that
visitors confirmed with helpful events; "review" is a question of an idea candidate that an
admin promoted or merged into the idea (candidate_id names that candidate).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("aliases") as batch:
        batch.add_column(sa.Column("source", sa.String(20), nullable=False, server_default="feedback"))
        batch.add_column(sa.Column("candidate_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("aliases") as batch:
        batch.drop_column("candidate_id")
        batch.drop_column("source")
