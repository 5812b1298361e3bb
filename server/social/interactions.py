"""Favourites and boosts: local actions and their stored state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from federation.dispatch import PRIORITY_BULK, PRIORITY_INTERACTIVE, Outbound
from protocol.activities import render_activity
from protocol.addressing import PUBLIC_VISIBILITY, Audience, is_public
from protocol.vocab import PUBLIC
from server.identity.accounts import Account
from server.social.distribution import announce_removal, distribute, notify
from server.social.graph import InvalidAction
from server.social.statuses import (
    NewStatus,
    Status,
    author_of,
    boost_by,
    insert_status,
    remote_follower_uris,
)
from server.social.visibility import can_see
from server.storage.ids import new_id
from server.storage.tables import bookmarks, favourites, statuses
from server.urls import Urls


async def add_favourite(
    conn: AsyncConnection, account_id: int, status_id: int, uri: str | None, now: datetime
) -> bool:
    """Record a like once; True when it is new."""
    return await insert_ignoring_duplicates(
        conn,
        favourites,
        {
            "id": new_id(now),
            "account_id": account_id,
            "status_id": status_id,
            "uri": uri,
            "created_at": now,
        },
        keys=["account_id", "status_id"],
    )


async def has_favourite(conn: AsyncConnection, account_id: int, status_id: int) -> bool:
    return await _favourite_uri(conn, account_id, status_id) is not None


async def _favourite_uri(
    conn: AsyncConnection, account_id: int, status_id: int
) -> tuple[str | None] | None:
    """(the Like's id,) when the like exists (its id may be unknown), else None."""
    row = (
        await conn.execute(
            select(favourites.c.uri).where(
                favourites.c.account_id == account_id, favourites.c.status_id == status_id
            )
        )
    ).first()
    return None if row is None else (row.uri,)


async def remove_favourite(conn: AsyncConnection, account_id: int, status_id: int) -> None:
    await conn.execute(
        delete(favourites).where(
            favourites.c.account_id == account_id, favourites.c.status_id == status_id
        )
    )


async def favourite_count(conn: AsyncConnection, status_id: int) -> int:
    rows = await conn.execute(select(favourites.c.id).where(favourites.c.status_id == status_id))
    return len(rows.all())


async def like(
    conn: AsyncConnection, urls: Urls, liker: Account, status: Status, now: datetime
) -> list[Outbound]:
    """Favourite a status; its remote author gets a Like."""
    if not await can_see(conn, liker, status):
        raise InvalidAction("this status is not visible to you")
    uri = urls.activity(new_id(now))
    if not await add_favourite(conn, liker.id, status.id, uri, now):
        return []
    await notify(conn, status.account_id, "favourite", liker.id, status.id, now)
    author = await author_of(conn, status)
    activity = render_activity("Like", uri, urls.actor(liker), status.uri)
    return _to_author(urls, liker, author, activity)


async def unlike(
    conn: AsyncConnection, urls: Urls, liker: Account, status: Status, now: datetime
) -> list[Outbound]:
    """Take a favourite back; its remote author gets Undo(Like)."""
    found = await _favourite_uri(conn, liker.id, status.id)
    if found is None:
        return []
    (uri,) = found
    await remove_favourite(conn, liker.id, status.id)
    author = await author_of(conn, status)
    embedded = {"id": uri, "type": "Like", "actor": urls.actor(liker), "object": status.uri}
    activity = render_activity("Undo", urls.activity(new_id(now)), urls.actor(liker), embedded)
    return _to_author(urls, liker, author, activity)


def _to_author(urls: Urls, actor: Account, author: Account, activity: dict) -> list[Outbound]:
    if author.is_local or not author.uri:
        return []
    return [Outbound(activity, urls.actor(actor), (author.uri,), PRIORITY_INTERACTIVE)]


async def boost(
    conn: AsyncConnection, urls: Urls, booster: Account, status: Status, now: datetime
) -> tuple[Status, list[Outbound]]:
    """Boost a public or unlisted status to one's followers (and tell its author)."""
    if status.reblog_of_id is not None:
        raise InvalidAction("boost the original status, not a boost")
    if not is_public(status.visibility) or not await can_see(conn, booster, status):
        raise InvalidAction("only public and unlisted statuses can be boosted")
    existing = await boost_by(conn, booster.id, status.id)
    if existing is not None:
        return existing, []
    boost_id = new_id(now)
    uri = urls.activity(boost_id)
    stored = await insert_status(
        conn,
        boost_id,
        NewStatus(
            uri=uri,
            account_id=booster.id,
            content="",
            visibility=PUBLIC_VISIBILITY,
            created_at=now,
            reblog_of_id=status.id,
        ),
    )
    assert stored is not None
    await distribute(conn, stored, now)
    author = await author_of(conn, status)
    audience = Audience(to=(PUBLIC,), cc=(urls.actor(author), urls.followers(booster) or ""))
    activity = render_activity(
        "Announce", uri, urls.actor(booster), status.uri, audience=audience, published=now
    )
    return stored, [await _fan_out(conn, urls, booster, author, activity)]


async def unboost(
    conn: AsyncConnection, urls: Urls, booster: Account, status: Status, now: datetime
) -> list[Outbound]:
    """Undo a boost; everyone who got the Announce gets Undo(Announce)."""
    existing = await boost_by(conn, booster.id, status.id)
    if existing is None:
        return []
    author = await author_of(conn, status)
    await announce_removal(conn, existing)
    await conn.execute(delete(statuses).where(statuses.c.id == existing.id))
    embedded = {
        "id": existing.uri,
        "type": "Announce",
        "actor": urls.actor(booster),
        "object": status.uri,
    }
    audience = Audience(to=(PUBLIC,), cc=(urls.actor(author), urls.followers(booster) or ""))
    activity = render_activity(
        "Undo", urls.activity(new_id(now)), urls.actor(booster), embedded, audience=audience
    )
    return [await _fan_out(conn, urls, booster, author, activity)]


async def _fan_out(
    conn: AsyncConnection, urls: Urls, booster: Account, author: Account, activity: dict
) -> Outbound:
    recipients = await remote_follower_uris(conn, booster.id)
    if not author.is_local and author.uri:
        recipients.append(author.uri)
    return Outbound(activity, urls.actor(booster), tuple(dict.fromkeys(recipients)), PRIORITY_BULK)


async def bookmark(conn: AsyncConnection, account: Account, status: Status, now: datetime) -> None:
    """Bookmarks are private: stored here, never federated."""
    if not await can_see(conn, account, status):
        raise InvalidAction("this status is not visible to you")
    await insert_ignoring_duplicates(
        conn,
        bookmarks,
        {"id": new_id(now), "account_id": account.id, "status_id": status.id, "created_at": now},
        keys=["account_id", "status_id"],
    )


async def unbookmark(conn: AsyncConnection, account: Account, status: Status) -> None:
    await conn.execute(
        delete(bookmarks).where(
            bookmarks.c.account_id == account.id, bookmarks.c.status_id == status.id
        )
    )
