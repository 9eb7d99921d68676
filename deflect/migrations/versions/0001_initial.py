"""Ideas, votes, searches and the results each search showed.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ideas",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(20), nullable=False, server_default="open"),
        sa.Column("merged_into", sa.String(200), nullable=True),
        sa.Column("votes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "idea_votes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idea_id", sa.String(200), sa.ForeignKey("ideas.id"), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("mrr", sa.Float, nullable=True),
        sa.Column("search_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_idea_votes_idea_id", "idea_votes", ["idea_id"])
    op.create_table(
        "searches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("session", sa.String(200), nullable=True),
        sa.Column("locale", sa.String(35), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("answered", sa.Boolean, nullable=False),
        sa.Column("top_score", sa.Float, nullable=True),
        sa.Column("index_version", sa.String(64), nullable=True),
    )
    op.create_index("ix_searches_session", "searches", ["session"])
    op.create_index("ix_searches_created_at", "searches", ["created_at"])
    op.create_table(
        "search_results",
        sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
        sa.Column("rank", sa.Integer, primary_key=True),
        sa.Column("item_type", sa.String(10), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("search_results")
    op.drop_table("searches")
    op.drop_table("idea_votes")
    op.drop_table("ideas")
