"""Peers: the most one payment from a peer node's users may be.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("peer_limits") as batch:
        batch.add_column(sa.Column("transfer_max", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("peer_limits") as batch:
        batch.drop_column("transfer_max")
