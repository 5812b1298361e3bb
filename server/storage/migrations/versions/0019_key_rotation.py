"""Ed25519 key rotation: the current key's id, and the retired keys still published.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account_keys") as batch:
        # A literal default lets SQLite add the column in place (no table copy).
        batch.add_column(
            sa.Column(
                "ed25519_fragment",
                sa.String(length=64),
                server_default="ed25519-key",
                nullable=False,
            )
        )
    op.create_table(
        "retired_keys",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("fragment", sa.String(length=64), nullable=False),
        sa.Column("ed25519_public", sa.LargeBinary(length=32), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_retired_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "fragment", name=op.f("pk_retired_keys")),
    )


def downgrade() -> None:
    op.drop_table("retired_keys")
    with op.batch_alter_table("account_keys") as batch:
        batch.drop_column("ed25519_fragment")
