"""Mutes: hide an account from one's feeds (and optionally notifications). Never federated."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from server.identity.accounts import Account
from server.social.graph import InvalidAction
from server.storage.ids import new_id
from server.storage.tables import mutes


async def mute(
    conn: AsyncConnection, account: Account, target: Account, notifications: bool, now: datetime
) -> None:
    """Mute `target` for `account`; muting again updates whether notifications are hidden."""
    if account.id == target.id:
        raise InvalidAction("you cannot mute yourself")
    values = {
        "id": new_id(now),
        "account_id": account.id,
        "target_account_id": target.id,
        "hide_notifications": notifications,
        "created_at": now,
    }
    if not await insert_ignoring_duplicates(
        conn, mutes, values, ["account_id", "target_account_id"]
    ):
        await conn.execute(
            update(mutes)
            .where(mutes.c.account_id == account.id, mutes.c.target_account_id == target.id)
            .values(hide_notifications=notifications)
        )


async def unmute(conn: AsyncConnection, account: Account, target: Account) -> None:
    await conn.execute(
        delete(mutes).where(
            mutes.c.account_id == account.id, mutes.c.target_account_id == target.id
        )
    )
