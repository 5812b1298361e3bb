"""Client API, accounts: profile fields, pinned statuses, mutes that expire.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place (no table copy, so the foreign keys that
    # point at `accounts` are left alone); existing rows read as "no fields", "never expires".
    op.add_column("accounts", sa.Column("profile_fields", sa.Text(), nullable=True))
    op.add_column("mutes", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_mutes_expires_at"), "mutes", ["expires_at"], unique=False)

    op.create_table(
        "status_pins",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("status_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_status_pins_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["status_id"],
            ["statuses.id"],
            name=op.f("fk_status_pins_status_id_statuses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_pins")),
        sa.UniqueConstraint("account_id", "status_id", name=op.f("uq_status_pins_account_id")),
    )
    op.create_index(op.f("ix_status_pins_status_id"), "status_pins", ["status_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_status_pins_status_id"), table_name="status_pins")
    op.drop_table("status_pins")
    op.drop_index(op.f("ix_mutes_expires_at"), table_name="mutes")
    with op.batch_alter_table("mutes", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("profile_fields")
