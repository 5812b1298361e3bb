"""Mutes: hide an account from one's feeds (and optionally notifications). Never federated."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from server.identity.accounts import Account
from server.social.graph import InvalidAction
from server.storage.ids import new_id
from server.storage.tables import mutes

# Mastodon's longest offered duration is a week; a year bounds what the clock must add.
DURATION_MAX = timedelta(days=366)


async def mute(
    conn: AsyncConnection,
    account: Account,
    target: Account,
    notifications: bool,
    now: datetime,
    duration: timedelta | None = None,
) -> None:
    """Mute `target` for `account` (until unmuted, or for `duration`); muting again updates
    whether notifications are hidden and when the mute ends, as Mastodon does."""
    if account.id == target.id:
        raise InvalidAction("you cannot mute yourself")
    expires_at = now + min(duration, DURATION_MAX) if duration else None
    values = {
        "id": new_id(now),
        "account_id": account.id,
        "target_account_id": target.id,
        "hide_notifications": notifications,
        "expires_at": expires_at,
        "created_at": now,
    }
    if not await insert_ignoring_duplicates(
        conn, mutes, values, ["account_id", "target_account_id"]
    ):
        await conn.execute(
            update(mutes)
            .where(mutes.c.account_id == account.id, mutes.c.target_account_id == target.id)
            .values(hide_notifications=notifications, expires_at=expires_at)
        )


async def unmute(conn: AsyncConnection, account: Account, target: Account) -> None:
    await conn.execute(
        delete(mutes).where(
            mutes.c.account_id == account.id, mutes.c.target_account_id == target.id
        )
    )


async def end_expired_mutes(conn: AsyncConnection, now: datetime) -> int:
    """Delete the mutes whose time is up; returns how many ended.

    Readers of `mutes` (feeds, notifications, relationships) need not check `expires_at`:
    a sweep calls this every minute, so a mute outlives its end by a minute at most.
    """
    result = await conn.execute(
        delete(mutes).where(mutes.c.expires_at.is_not(None), mutes.c.expires_at <= now)
    )
    return int(result.rowcount or 0)
