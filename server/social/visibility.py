"""Who may see a status: Mastodon's rules for public, unlisted, followers-only and direct."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.addressing import is_public
from server.identity.accounts import Account
from server.social.statuses import Status
from server.storage.tables import accounts, blocks, follows, mentions


async def is_blocked_between(conn: AsyncConnection, a: int, b: int) -> bool:
    """Whether either account blocks the other."""
    row = await conn.execute(
        select(blocks.c.id).where(
            or_(
                and_(blocks.c.account_id == a, blocks.c.target_account_id == b),
                and_(blocks.c.account_id == b, blocks.c.target_account_id == a),
            )
        )
    )
    return row.first() is not None


async def follows_accepted(conn: AsyncConnection, follower_id: int, target_id: int) -> bool:
    row = await conn.execute(
        select(follows.c.id).where(
            follows.c.account_id == follower_id,
            follows.c.target_account_id == target_id,
            follows.c.state == "accepted",
        )
    )
    return row.first() is not None


async def is_mentioned(conn: AsyncConnection, status_id: int, account_id: int) -> bool:
    row = await conn.execute(
        select(mentions.c.status_id).where(
            mentions.c.status_id == status_id, mentions.c.account_id == account_id
        )
    )
    return row.first() is not None


async def is_suspended(conn: AsyncConnection, account_id: int) -> bool:
    suspended_at = await conn.scalar(
        select(accounts.c.suspended_at).where(accounts.c.id == account_id)
    )
    return suspended_at is not None


async def can_see(conn: AsyncConnection, viewer: Account | None, status: Status) -> bool:
    """Whether `viewer` (None: an anonymous visitor) may see the status."""
    if viewer is not None and viewer.id == status.account_id:
        return True
    if await is_suspended(conn, status.account_id):
        return False  # kept for an unsuspend, shown to nobody meanwhile (as Mastodon)
    if viewer is not None and await is_blocked_between(conn, viewer.id, status.account_id):
        return False
    if is_public(status.visibility):
        return True
    if viewer is None:
        return False
    if await is_mentioned(conn, status.id, viewer.id):
        return True
    return status.visibility == "private" and await follows_accepted(
        conn, viewer.id, status.account_id
    )
