"""Payments between users: payment requests, settlements (both sides), peer credit limits.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_requests",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("uri", sa.String(length=2048), nullable=False),
        sa.Column("payee_uri", sa.String(length=2048), nullable=False),
        sa.Column("payer_uri", sa.String(length=2048), nullable=True),
        sa.Column("payee_account_id", sa.BigInteger(), nullable=True),
        sa.Column("payer_account_id", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("condition", sa.String(length=64), nullable=False),
        sa.Column("fulfillment", sa.String(length=64), nullable=True),
        sa.Column("settlement_node", sa.String(length=2048), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("paid_by", sa.String(length=2048), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_requests_positive_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_requests")),
        sa.UniqueConstraint("uri", name=op.f("uq_payment_requests_uri")),
    )
    op.create_index(
        "ix_payment_requests_payee_account_id_id",
        "payment_requests",
        ["payee_account_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_payment_requests_payer_account_id_id",
        "payment_requests",
        ["payer_account_id", "id"],
        unique=False,
    )
    op.create_table(
        "peer_limits",
        sa.Column("peer", sa.String(length=300), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("credit_limit", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "credit_limit >= 0", name=op.f("ck_peer_limits_credit_limit_not_negative")
        ),
        sa.PrimaryKeyConstraint("peer", "currency", name=op.f("pk_peer_limits")),
    )
    op.create_table(
        "settlements",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("uri", sa.String(length=2048), nullable=False),
        sa.Column("role", sa.String(length=6), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("peer", sa.String(length=2048), nullable=True),
        sa.Column("request_uri", sa.String(length=2048), nullable=True),
        sa.Column("payer_uri", sa.String(length=2048), nullable=False),
        sa.Column("payee_uri", sa.String(length=2048), nullable=False),
        sa.Column("payer_account_id", sa.BigInteger(), nullable=True),
        sa.Column("payee_account_id", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=4), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("fulfillment", sa.String(length=64), nullable=True),
        sa.Column("transfer", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_settlements_positive_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
        sa.UniqueConstraint("uri", name=op.f("uq_settlements_uri")),
    )
    op.create_index(
        "ix_settlements_next_attempt_at", "settlements", ["next_attempt_at"], unique=False
    )
    op.create_index(
        "ix_settlements_payee_account_id_id",
        "settlements",
        ["payee_account_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_settlements_payer_account_id_id",
        "settlements",
        ["payer_account_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("settlements")
    op.drop_table("peer_limits")
    op.drop_table("payment_requests")
