"""Deflection events, learned aliases and the shared sync counters.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("item_type", sa.String(10), nullable=True),
        sa.Column("item_id", sa.String(200), nullable=True),
        sa.Column("session", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("mrr", sa.Float, nullable=True),
    )
    op.create_index("ix_events_search_id", "events", ["search_id"])
    op.create_index("ix_events_created_at", "events", ["created_at"])
    op.create_table(
        "aliases",
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
        sa.UniqueConstraint("item_type", "item_id", "query_key", name="uq_alias_item_query"),
    )
    op.create_table(
        "alias_confirmations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("search_id", sa.String(64), nullable=False),
        sa.Column("session", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_alias_confirmations_alias_id", "alias_confirmations", ["alias_id"])
    op.create_index("ix_alias_confirmations_session", "alias_confirmations", ["session"])
    op.create_index("ix_alias_confirmations_created_at", "alias_confirmations", ["created_at"])
    op.create_table(
        "sync_state",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("text", sa.String(300), nullable=True),
    )
    # Metrics read searches by session and time.
    op.create_index("ix_searches_session_created", "searches", ["session", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_searches_session_created", "searches")
    op.drop_table("sync_state")
    op.drop_table("alias_confirmations")
    op.drop_table("aliases")
    op.drop_table("events")
