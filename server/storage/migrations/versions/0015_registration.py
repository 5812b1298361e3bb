"""Registration: accounts' optional email and approval state, invites, sign-ups, password
reset tokens.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        # A literal default ('1' is true on both databases) lets SQLite add the column in
        # place instead of copying the table; every existing account is approved.
        batch.add_column(sa.Column("approved", sa.Boolean(), server_default="1", nullable=False))
    op.create_index("uq_accounts_email", "accounts", ["email"], unique=True)
    op.create_table(
        "invites",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("created_by_id", sa.BigInteger(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["accounts.id"],
            name=op.f("fk_invites_created_by_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invites")),
        sa.UniqueConstraint("code", name=op.f("uq_invites_code")),
    )
    op.create_table(
        "sign_ups",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("invite_id", sa.BigInteger(), nullable=True),
        sa.Column("application_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sign_ups_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invite_id"],
            ["invites.id"],
            name=op.f("fk_sign_ups_invite_id_invites"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["oauth_applications.id"],
            name=op.f("fk_sign_ups_application_id_oauth_applications"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_sign_ups")),
    )
    op.create_index(op.f("ix_sign_ups_invite_id"), "sign_ups", ["invite_id"], unique=False)
    op.create_table(
        "password_resets",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_password_resets_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_password_resets")),
    )
    op.create_index(
        op.f("ix_password_resets_account_id"), "password_resets", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_password_resets_account_id"), table_name="password_resets")
    op.drop_table("password_resets")
    op.drop_index(op.f("ix_sign_ups_invite_id"), table_name="sign_ups")
    op.drop_table("sign_ups")
    op.drop_table("invites")
    op.drop_index("uq_accounts_email", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("approved")
        batch.drop_column("email")
