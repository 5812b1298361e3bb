"""Follows and blocks: the local actions and the state they leave, for both directions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.dispatch import PRIORITY_INTERACTIVE, Outbound
from protocol.activities import render_activity
from server.identity.accounts import Account, get_account
from server.social.distribution import notify
from server.storage.ids import new_id
from server.storage.tables import blocks, follows
from server.urls import Urls

REQUESTED, ACCEPTED = "requested", "accepted"


class InvalidAction(ValueError):
    """A social action that cannot be taken; the message says why."""


@dataclass(frozen=True)
class Follow:
    id: int
    account_id: int
    target_account_id: int
    state: str
    show_reblogs: bool
    notify: bool
    uri: str | None
    created_at: datetime


def _follow(row: object) -> Follow:
    return Follow(**row._mapping)  # type: ignore[attr-defined]


async def follow_between(conn: AsyncConnection, follower_id: int, target_id: int) -> Follow | None:
    row = (
        await conn.execute(
            select(follows).where(
                follows.c.account_id == follower_id, follows.c.target_account_id == target_id
            )
        )
    ).first()
    return _follow(row) if row else None


async def follow_by_uri(conn: AsyncConnection, uri: str) -> Follow | None:
    row = (await conn.execute(select(follows).where(follows.c.uri == uri))).first()
    return _follow(row) if row else None


async def insert_follow(
    conn: AsyncConnection,
    follower_id: int,
    target_id: int,
    uri: str,
    state: str,
    now: datetime,
    show_reblogs: bool = True,
    notify: bool = False,
) -> Follow:
    follow_id = new_id(now)
    await conn.execute(
        insert(follows).values(
            id=follow_id,
            account_id=follower_id,
            target_account_id=target_id,
            uri=uri,
            state=state,
            show_reblogs=show_reblogs,
            notify=notify,
            created_at=now,
        )
    )
    found = await follow_between(conn, follower_id, target_id)
    assert found is not None
    return found


async def set_follow_state(
    conn: AsyncConnection, follow: Follow, state: str, uri: str | None = None
) -> None:
    values: dict[str, object] = {"state": state}
    if uri is not None:
        values["uri"] = uri
    await conn.execute(update(follows).where(follows.c.id == follow.id).values(**values))


async def remove_follow(conn: AsyncConnection, follow: Follow) -> None:
    await conn.execute(delete(follows).where(follows.c.id == follow.id))


async def sever_follows(conn: AsyncConnection, a: int, b: int) -> list[Follow]:
    """Remove follows in both directions between two accounts; returns what was removed."""
    condition = or_(
        and_(follows.c.account_id == a, follows.c.target_account_id == b),
        and_(follows.c.account_id == b, follows.c.target_account_id == a),
    )
    removed = [_follow(row) for row in await conn.execute(select(follows).where(condition))]
    await conn.execute(delete(follows).where(condition))
    return removed


def follow_activity(urls: Urls, follow: Follow, follower: Account, target: Account) -> dict:
    """The Follow as it federated (Accept, Reject and Undo embed it)."""
    return {
        "id": follow.uri,
        "type": "Follow",
        "actor": urls.actor(follower),
        "object": urls.actor(target),
    }


def _to(urls: Urls, actor: Account, recipient: Account, activity: dict) -> list[Outbound]:
    """Deliver to one remote account (nothing to deliver for local ones)."""
    if recipient.is_local or not recipient.uri:
        return []
    return [Outbound(activity, urls.actor(actor), (recipient.uri,), PRIORITY_INTERACTIVE)]


async def follow(
    conn: AsyncConnection,
    urls: Urls,
    follower: Account,
    target: Account,
    now: datetime,
    show_reblogs: bool | None = None,
    notify_posts: bool | None = None,
) -> list[Outbound]:
    """Follow someone: immediate for an unlocked local account, a request otherwise.

    Following again changes only the options (boosts shown, notified of posts), as Mastodon.
    """
    if follower.id == target.id:
        raise InvalidAction("you cannot follow yourself")
    if await is_blocking_either(conn, follower.id, target.id):
        raise InvalidAction("a block stands between these accounts")
    existing = await follow_between(conn, follower.id, target.id)
    options = {
        key: value
        for key, value in (("show_reblogs", show_reblogs), ("notify", notify_posts))
        if value is not None
    }
    if existing is not None and options:
        await conn.execute(update(follows).where(follows.c.id == existing.id).values(**options))
    if existing is not None and (existing.state == ACCEPTED or target.is_local):
        return []
    if existing is None:
        state = ACCEPTED if target.is_local and not target.is_locked else REQUESTED
        if target.is_local:
            kind = "follow" if state == ACCEPTED else "follow_request"
            await notify(conn, target.id, kind, follower.id, None, now)
        existing = await insert_follow(
            conn, follower.id, target.id, urls.activity(new_id(now)), state, now, **options
        )
    activity = render_activity("Follow", existing.uri, urls.actor(follower), urls.actor(target))
    return _to(urls, follower, target, activity)


async def unfollow(
    conn: AsyncConnection, urls: Urls, follower: Account, target: Account, now: datetime
) -> list[Outbound]:
    """Stop following (or withdraw a request); a remote target gets Undo(Follow)."""
    existing = await follow_between(conn, follower.id, target.id)
    if existing is None:
        return []
    await remove_follow(conn, existing)
    embedded = follow_activity(urls, existing, follower, target)
    activity = render_activity("Undo", urls.activity(new_id(now)), urls.actor(follower), embedded)
    return _to(urls, follower, target, activity)


async def answer_follow_request(
    conn: AsyncConnection,
    urls: Urls,
    target: Account,
    follower: Account,
    accept: bool,
    now: datetime,
) -> list[Outbound]:
    """A locked account accepts or rejects a pending request."""
    existing = await follow_between(conn, follower.id, target.id)
    if existing is None or existing.state != REQUESTED:
        raise InvalidAction("there is no pending follow request from this account")
    if accept:
        await set_follow_state(conn, existing, ACCEPTED)
    else:
        await remove_follow(conn, existing)
    return accept_or_reject(urls, existing, follower, target, accept, now)


def accept_or_reject(
    urls: Urls, follow_row: Follow, follower: Account, target: Account, accept: bool, now: datetime
) -> list[Outbound]:
    """Tell a remote follower its Follow was accepted or rejected (Follow embedded)."""
    embedded = follow_activity(urls, follow_row, follower, target)
    kind = "Accept" if accept else "Reject"
    activity = render_activity(kind, urls.activity(new_id(now)), urls.actor(target), embedded)
    return _to(urls, target, follower, activity)


async def is_blocking_either(conn: AsyncConnection, a: int, b: int) -> bool:
    row = await conn.execute(
        select(blocks.c.id).where(
            or_(
                and_(blocks.c.account_id == a, blocks.c.target_account_id == b),
                and_(blocks.c.account_id == b, blocks.c.target_account_id == a),
            )
        )
    )
    return row.first() is not None


async def block_between(conn: AsyncConnection, blocker_id: int, target_id: int) -> int | None:
    row = (
        await conn.execute(
            select(blocks.c.id).where(
                blocks.c.account_id == blocker_id, blocks.c.target_account_id == target_id
            )
        )
    ).first()
    return row.id if row else None


async def insert_block(
    conn: AsyncConnection, blocker_id: int, target_id: int, uri: str | None, now: datetime
) -> None:
    await conn.execute(
        insert(blocks).values(
            id=new_id(now),
            account_id=blocker_id,
            target_account_id=target_id,
            uri=uri,
            created_at=now,
        )
    )


async def block(
    conn: AsyncConnection, urls: Urls, blocker: Account, target: Account, now: datetime
) -> list[Outbound]:
    """Block: sever follows both ways; a remote target gets Undo(Follow) if followed, and Block."""
    if blocker.id == target.id:
        raise InvalidAction("you cannot block yourself")
    if await block_between(conn, blocker.id, target.id) is not None:
        return []
    outbound: list[Outbound] = []
    for removed in await sever_follows(conn, blocker.id, target.id):
        if removed.account_id == blocker.id:
            embedded = follow_activity(urls, removed, blocker, target)
            undo = render_activity(
                "Undo", urls.activity(new_id(now)), urls.actor(blocker), embedded
            )
            outbound += _to(urls, blocker, target, undo)
    uri = urls.activity(new_id(now))
    await insert_block(conn, blocker.id, target.id, uri, now)
    activity = render_activity("Block", uri, urls.actor(blocker), urls.actor(target))
    return outbound + _to(urls, blocker, target, activity)


async def unblock(
    conn: AsyncConnection, urls: Urls, blocker: Account, target: Account, now: datetime
) -> list[Outbound]:
    """Lift a block; a remote target gets Undo(Block)."""
    row = (
        await conn.execute(
            select(blocks.c.id, blocks.c.uri).where(
                blocks.c.account_id == blocker.id, blocks.c.target_account_id == target.id
            )
        )
    ).first()
    if row is None:
        return []
    await conn.execute(delete(blocks).where(blocks.c.id == row.id))
    embedded = {
        "id": row.uri,
        "type": "Block",
        "actor": urls.actor(blocker),
        "object": urls.actor(target),
    }
    activity = render_activity("Undo", urls.activity(new_id(now)), urls.actor(blocker), embedded)
    return _to(urls, blocker, target, activity)


async def follower_accounts(
    conn: AsyncConnection, target_id: int, state: str = ACCEPTED
) -> list[Account]:
    """An account's followers (or pending requesters), oldest first."""
    rows = await conn.execute(
        select(follows.c.account_id)
        .where(follows.c.target_account_id == target_id, follows.c.state == state)
        .order_by(follows.c.id)
    )
    found = [await get_account(conn, row.account_id) for row in rows]
    return [a for a in found if a is not None]


async def remove_from_followers(
    conn: AsyncConnection, urls: Urls, account: Account, follower: Account, now: datetime
) -> list[Outbound]:
    """Make someone stop following you; a remote follower's server gets Reject(Follow)."""
    existing = await follow_between(conn, follower.id, account.id)
    if existing is None:
        return []
    await remove_follow(conn, existing)
    return accept_or_reject(urls, existing, follower, account, False, now)
