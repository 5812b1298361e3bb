"""Chats: every direct-message thread with its members and name, read markers, and whether
a user shares read receipts.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        # A literal default ('0' is false on both databases) lets SQLite add the column in
        # place: copying the table would cascade-delete everything that refers to accounts.
        batch.add_column(
            sa.Column("shares_read_receipts", sa.Boolean(), server_default="0", nullable=False)
        )
    op.create_table(
        "chats",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("context_uri", sa.String(length=2048), nullable=False),
        sa.Column("owner_account_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("is_group", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_account_id"],
            ["accounts.id"],
            name=op.f("fk_chats_owner_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chats")),
        sa.UniqueConstraint("context_uri", name=op.f("uq_chats_context_uri")),
    )
    op.create_table(
        "chat_members",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_up_to_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_chat_members_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["chats.id"],
            name=op.f("fk_chat_members_chat_id_chats"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chat_id", "account_id", name=op.f("pk_chat_members")),
    )
    op.create_index(
        op.f("ix_chat_members_account_id"), "chat_members", ["account_id"], unique=False
    )
    _backfill()


def _backfill() -> None:
    """Every existing thread becomes a chat; its members are whoever its messages named."""
    conn = op.get_bind()
    threads = conn.execute(sa.text("SELECT DISTINCT context_uri FROM conversations")).all()
    now = conn.execute(sa.text("SELECT CURRENT_TIMESTAMP")).scalar()
    used: set[int] = set()
    for (context_uri,) in threads:
        people = conn.execute(
            sa.text(
                "SELECT s.account_id AS person, MIN(s.id) AS first FROM statuses s "
                "WHERE s.visibility = 'direct' AND (s.context_uri = :c OR s.uri = :c) "
                "GROUP BY s.account_id "
                "UNION SELECT m.account_id, MIN(s.id) FROM mentions m "
                "JOIN statuses s ON s.id = m.status_id "
                "WHERE s.visibility = 'direct' AND (s.context_uri = :c OR s.uri = :c) "
                "GROUP BY m.account_id"
            ),
            {"c": context_uri},
        ).all()
        if not people:
            continue
        first = min(row.first for row in people)
        owner = conn.execute(
            sa.text("SELECT account_id FROM statuses WHERE id = :id"), {"id": first}
        ).scalar()
        members = {row.person for row in people}
        # The thread's first message id dates the chat as a new id would.
        chat_id = first
        while chat_id in used:
            chat_id += 1
        used.add(chat_id)
        conn.execute(
            sa.text(
                "INSERT INTO chats (id, context_uri, owner_account_id, name, is_group, "
                "created_at, updated_at) VALUES (:id, :c, :owner, NULL, :group, :now, :now)"
            ),
            {
                "id": chat_id,
                "c": context_uri,
                "owner": owner,
                "now": now,
                "group": len(members) > 2,
            },
        )
        for person in members:
            conn.execute(
                sa.text(
                    "INSERT INTO chat_members (chat_id, account_id, joined_at) "
                    "VALUES (:chat, :person, :now)"
                ),
                {"chat": chat_id, "person": person, "now": now},
            )


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_members_account_id"), table_name="chat_members")
    op.drop_table("chat_members")
    op.drop_table("chats")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("shares_read_receipts")
