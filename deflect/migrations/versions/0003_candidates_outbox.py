"""Idea candidates (clusters of unanswered searches), their members, cached query vectors, the outbox.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidates",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("keywords", sa.Text, nullable=False, server_default="[]"),
        sa.Column("status", sa.String(20), nullable=False, server_default="new"),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("idea_id", sa.String(200), nullable=True),
        sa.Column("size", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dismissed_size", sa.Integer, nullable=True),
        sa.Column("centroid", sa.LargeBinary, nullable=True),
        sa.Column("join_threshold", sa.Float, nullable=True),
        sa.Column("checked_version", sa.String(64), nullable=True),
        sa.Column("answered_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("reviewed_at", sa.Float, nullable=True),
    )
    op.create_index("ix_candidates_status", "candidates", ["status"])
    op.create_table(
        "candidate_members",
        sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
        sa.Column("candidate_id", sa.String(40), sa.ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False),
        sa.Column("how", sa.String(10), nullable=False, server_default="rebuild"),
        sa.Column("joined_at", sa.Float, nullable=False),
    )
    op.create_index("ix_candidate_members_candidate_id", "candidate_members", ["candidate_id"])
    op.create_table(
        "pool_vectors",
        sa.Column("search_id", sa.String(64), sa.ForeignKey("searches.id"), primary_key=True),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("dedupe_key", sa.String(500), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(200), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
    )
    op.create_index("ix_outbox_status_next", "outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("pool_vectors")
    op.drop_table("candidate_members")
    op.drop_table("candidates")
