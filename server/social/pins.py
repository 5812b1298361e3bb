"""Pinned statuses: a few of one's own posts featured on the profile (Mastodon's pins).

They federate as the actor's `featured` collection, with Add and Remove activities sent to
followers' servers when a post is pinned or unpinned, as Mastodon does.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from federation.dispatch import PRIORITY_INTERACTIVE, Outbound
from protocol.activities import render_activity
from protocol.addressing import Audience
from protocol.vocab import PUBLIC
from server.identity.accounts import Account
from server.social.graph import InvalidAction
from server.social.statuses import Status, remote_follower_uris, status_from_row
from server.social.timelines import PageRequest, newest_first, paged
from server.storage.ids import new_id
from server.storage.tables import status_pins, status_tags, statuses
from server.urls import Urls

PINS_MAX = 5  # Mastodon's limit per account
PINNABLE = ("public", "unlisted")


async def is_pinned(conn: AsyncConnection, account_id: int, status_id: int) -> bool:
    query = select(
        exists().where(status_pins.c.account_id == account_id, status_pins.c.status_id == status_id)
    )
    return bool((await conn.execute(query)).scalar_one())


async def pin(
    conn: AsyncConnection, urls: Urls, account: Account, status: Status, now: datetime
) -> list[Outbound]:
    """Feature one's own public or unlisted post; pinning it again changes nothing."""
    if status.account_id != account.id:
        raise InvalidAction("Validation failed: Someone else's post cannot be pinned")
    if status.reblog_of_id is not None:
        raise InvalidAction("Validation failed: A boost cannot be pinned")
    if status.visibility not in PINNABLE:
        raise InvalidAction("Validation failed: Only public and unlisted posts can be pinned")
    if await is_pinned(conn, account.id, status.id):
        return []
    count = select(func.count()).select_from(status_pins)
    pinned = (await conn.execute(count.where(status_pins.c.account_id == account.id))).scalar_one()
    if pinned >= PINS_MAX:
        raise InvalidAction(
            "Validation failed: You have already pinned the maximum number of posts"
        )
    values = {
        "id": new_id(now),
        "account_id": account.id,
        "status_id": status.id,
        "created_at": now,
    }
    if not await insert_ignoring_duplicates(conn, status_pins, values, ["account_id", "status_id"]):
        return []  # pinned by a request that raced this one
    return await _announce(conn, urls, account, status, "Add", now)


async def unpin(
    conn: AsyncConnection, urls: Urls, account: Account, status: Status, now: datetime
) -> list[Outbound]:
    """Stop featuring a post (nothing happens if it was not pinned)."""
    removed = await conn.execute(
        delete(status_pins).where(
            status_pins.c.account_id == account.id, status_pins.c.status_id == status.id
        )
    )
    if not removed.rowcount:
        return []
    return await _announce(conn, urls, account, status, "Remove", now)


async def _announce(
    conn: AsyncConnection, urls: Urls, account: Account, status: Status, kind: str, now: datetime
) -> list[Outbound]:
    """Add or Remove the post to/from the `featured` collection, for followers' servers."""
    recipients = tuple(await remote_follower_uris(conn, account.id))
    if not recipients:
        return []
    actor = urls.actor(account)
    activity = render_activity(
        kind,
        urls.activity(new_id(now)),
        actor,
        status.uri,
        Audience(to=(PUBLIC,), cc=(urls.followers(account) or "",)),
        target=urls.actor_collection(account, "collections/featured"),
    )
    return [Outbound(activity, actor, recipients, PRIORITY_INTERACTIVE)]


def _pinned_of(account_id: int) -> Select:
    return (
        select(statuses)
        .join(status_pins, status_pins.c.status_id == statuses.c.id)
        .where(status_pins.c.account_id == account_id, statuses.c.account_id == account_id)
    )


async def pinned_statuses(
    conn: AsyncConnection, author: Account, page: PageRequest, tagged: str | None = None
) -> list[Status]:
    """An account's pinned posts, newest post first (all of them are public or unlisted)."""
    query = _pinned_of(author.id).where(statuses.c.visibility.in_(PINNABLE))
    if tagged:
        query = query.where(
            exists().where(
                status_tags.c.status_id == statuses.c.id, status_tags.c.name == tagged.lower()
            )
        )
    rows = (await conn.execute(paged(query, statuses.c.id, page))).all()
    return [status_from_row(row) for row in newest_first(rows, page)]


async def pinned_ids(conn: AsyncConnection, account_id: int, status_ids: list[int]) -> set[int]:
    """Which of these statuses the account has pinned."""
    if not status_ids:
        return set()
    rows = await conn.execute(
        select(status_pins.c.status_id).where(
            status_pins.c.account_id == account_id, status_pins.c.status_id.in_(status_ids)
        )
    )
    return {row.status_id for row in rows}


async def featured(conn: AsyncConnection, account: Account) -> list[Status]:
    """The pinned posts the `featured` collection lists, most recently pinned first."""
    query = (
        _pinned_of(account.id)
        .where(statuses.c.visibility.in_(PINNABLE))
        .order_by(status_pins.c.id.desc())
        .limit(PINS_MAX)
    )
    return [status_from_row(row) for row in await conn.execute(query)]
