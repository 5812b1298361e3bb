"""OAuth: client applications, authorization codes, application and refresh tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_applications",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("website", sa.String(2048), nullable=True),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("scopes", sa.String(1024), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("client_secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_applications")),
        sa.UniqueConstraint("client_id", name=op.f("uq_oauth_applications_client_id")),
    )
    op.create_table(
        "oauth_codes",
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("application_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("scopes", sa.String(1024), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("code_challenge_method", sa.String(16), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_oauth_codes_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["oauth_applications.id"],
            name=op.f("fk_oauth_codes_application_id_oauth_applications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_sha256", name=op.f("pk_oauth_codes")),
    )
    with op.batch_alter_table("access_tokens") as batch:
        batch.alter_column("account_id", existing_type=sa.BigInteger(), nullable=True)
        batch.add_column(sa.Column("application_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("refresh_token_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            op.f("fk_access_tokens_application_id_oauth_applications"),
            "oauth_applications",
            ["application_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(op.f("ix_access_tokens_application_id"), ["application_id"])
        batch.create_unique_constraint(
            op.f("uq_access_tokens_refresh_token_sha256"), ["refresh_token_sha256"]
        )


def downgrade() -> None:
    with op.batch_alter_table("access_tokens") as batch:
        batch.drop_constraint(op.f("uq_access_tokens_refresh_token_sha256"), type_="unique")
        batch.drop_index(op.f("ix_access_tokens_application_id"))
        batch.drop_constraint(
            op.f("fk_access_tokens_application_id_oauth_applications"), type_="foreignkey"
        )
        batch.drop_column("expires_at")
        batch.drop_column("refresh_token_sha256")
        batch.drop_column("application_id")
        batch.alter_column("account_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_table("oauth_codes")
    op.drop_table("oauth_applications")
