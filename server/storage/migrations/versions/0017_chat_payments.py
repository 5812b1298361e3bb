"""Chat messages about a payment request or transfer.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_payments",
        sa.Column("status_id", sa.BigInteger(), nullable=False),
        sa.Column("payment_uri", sa.String(length=2048), nullable=False),
        sa.ForeignKeyConstraint(
            ["status_id"],
            ["statuses.id"],
            name=op.f("fk_chat_payments_status_id_statuses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("status_id", name=op.f("pk_chat_payments")),
    )
    op.create_index(
        op.f("ix_chat_payments_payment_uri"), "chat_payments", ["payment_uri"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_payments_payment_uri"), table_name="chat_payments")
    op.drop_table("chat_payments")
