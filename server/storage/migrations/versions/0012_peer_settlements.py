"""Settlement between operators, booked against the peer account.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peer_settlements",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("uri", sa.String(length=2048), nullable=False),
        sa.Column("peer", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_peer_settlements_positive_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peer_settlements")),
        sa.UniqueConstraint("uri", name=op.f("uq_peer_settlements_uri")),
    )
    op.create_index(
        "uq_peer_settlements_peer_role_reference",
        "peer_settlements",
        ["peer", "role", "reference"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("peer_settlements")
