"""alias_confirmations.client: the address a confirmation came from, so that one client is
limited per hour whatever session names it sends (setting alias_limit_per_client).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alias_confirmations") as batch:
        batch.add_column(sa.Column("client", sa.String(200), nullable=True))
        batch.create_index("ix_alias_confirmations_client", ["client"])


def downgrade() -> None:
    with op.batch_alter_table("alias_confirmations") as batch:
        batch.drop_index("ix_alias_confirmations_client")
        batch.drop_column("client")
