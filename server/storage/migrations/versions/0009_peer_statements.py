"""Netting statements between nodes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peer_statements",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("uri", sa.String(length=2048), nullable=False),
        sa.Column("peer", sa.String(length=2048), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("problems", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peer_statements")),
    )
    op.create_index(
        "ix_peer_statements_peer_currency_sequence",
        "peer_statements",
        ["peer", "currency", "sequence"],
        unique=False,
    )
    op.create_index("uq_peer_statements_uri_role", "peer_statements", ["uri", "role"], unique=True)


def downgrade() -> None:
    op.drop_table("peer_statements")
