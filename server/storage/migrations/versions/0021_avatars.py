"""Profile pictures of local accounts: the file under media/ that an account shows.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and without a default: SQLite adds it in place (no table copy).
    op.add_column("accounts", sa.Column("avatar_file", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_accounts_avatar_file"), "accounts", ["avatar_file"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_accounts_avatar_file"), table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("avatar_file")
