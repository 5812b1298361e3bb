"""Media attachments: local uploads and remote posts' attachments.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_attachments",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("status_id", sa.BigInteger(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("file_name", sa.String(length=100), nullable=True),
        sa.Column("preview_name", sa.String(length=100), nullable=True),
        sa.Column("remote_url", sa.String(length=2048), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("blurhash", sa.String(length=100), nullable=True),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_media_attachments_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["status_id"],
            ["statuses.id"],
            name=op.f("fk_media_attachments_status_id_statuses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_attachments")),
        sa.UniqueConstraint("file_name", name=op.f("uq_media_attachments_file_name")),
    )
    op.create_index(
        op.f("ix_media_attachments_status_id"), "media_attachments", ["status_id"], unique=False
    )
    op.create_index(
        "ix_media_attachments_account_id_status_id",
        "media_attachments",
        ["account_id", "status_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("media_attachments")
