"""Where a new status goes on this node: home feeds, notifications, conversations, streams.

Home timelines are written when a status arrives (fan-out on write), so reading one is a
single index scan however much the node holds (performance.md: 12-14 ms p99 against 44-47 ms
for fan-out on read at a million statuses).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    or_,
    select,
    union,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from server.identity.accounts import Account, get_account
from server.social.chats import chat_changed, record_direct_message
from server.social.events import emit
from server.social.media import has_attachments
from server.social.statuses import Status, mentioned_accounts, status_by_id, tags_of
from server.storage.ids import new_id
from server.storage.tables import (
    accounts,
    blocks,
    follows,
    home_feed,
    mutes,
    notifications,
    statuses,
)

FEED_VISIBILITIES = ("public", "unlisted", "private")


# Local accounts that block `author`, that `author` blocks, or that mute `author`.
_SILENCED_BY = union(
    select(blocks.c.account_id).where(blocks.c.target_account_id == bindparam("author")),
    select(blocks.c.target_account_id).where(blocks.c.account_id == bindparam("author")),
    select(mutes.c.account_id).where(mutes.c.target_account_id == bindparam("author")),
).execution_options(kith_direct=True)


async def silenced_by(conn: AsyncConnection, author_id: int) -> set[int]:
    """Local accounts that block or mute `author_id`, or that it blocks (they get nothing from
    it)."""
    return set((await conn.execute(_SILENCED_BY, {"author": author_id})).scalars())


def _local_followers(*conditions: ColumnElement[bool]) -> Select:
    return (
        select(follows.c.account_id)
        .join(accounts, accounts.c.id == follows.c.account_id)
        .where(
            follows.c.target_account_id == bindparam("account"),
            follows.c.state == "accepted",
            accounts.c.domain == "",
            *conditions,
        )
        .execution_options(kith_direct=True)  # see server/storage/direct.py
    )


_LOCAL_FOLLOWERS = _local_followers()
_LOCAL_REBLOG_FOLLOWERS = _local_followers(follows.c.show_reblogs.is_(True))
_LOCAL_SUBSCRIBERS = _local_followers(follows.c.notify.is_(True))


async def local_followers(
    conn: AsyncConnection, account_id: int, reblogs_only: bool = False
) -> list[int]:
    query = _LOCAL_REBLOG_FOLLOWERS if reblogs_only else _LOCAL_FOLLOWERS
    return list((await conn.execute(query, {"account": account_id})).scalars())


async def distribute(conn: AsyncConnection, status: Status, now: datetime) -> None:
    """Fan a newly stored status out on this node."""
    author = await get_account(conn, status.account_id)
    assert author is not None
    silenced = await silenced_by(conn, author.id)
    mentioned = [
        (a, silent) for a, silent in await mentioned_accounts(conn, status.id) if a.is_local
    ]
    readers: set[int] = {author.id} if author.is_local else set()
    if status.visibility == "direct":
        # A direct message lives in its chat and Mastodon's `conversations`, never in a home
        # timeline, its author's included (Mastodon puts it in mentioned followers' feeds).
        readers = set()
    elif status.reblog_of_id is not None:
        readers |= set(await local_followers(conn, author.id, reblogs_only=True))
        await _notify_reblog(conn, status, author, now)
    else:
        # As Mastodon: followers get what is addressed to them; a limited post (addressed to
        # someone it does not mention) reaches the home feed only of mentioned followers.
        followers = set(await local_followers(conn, author.id))
        if status.visibility not in FEED_VISIBILITIES:
            followers &= {a.id for a, _ in mentioned}
        readers |= followers - await _outside_the_thread(conn, status, followers, mentioned)
    readers -= silenced - {author.id}
    for reader in sorted(readers):
        await insert_ignoring_duplicates(
            conn,
            home_feed,
            {"account_id": reader, "status_id": status.id},
            ["account_id", "status_id"],
        )
    emit(conn, [f"user:{reader}" for reader in sorted(readers)], "update", status.id)
    await _public_streams(conn, status, author)
    for account, _ in mentioned:
        if account.id != author.id and account.id not in silenced:
            await notify(conn, account.id, "mention", author.id, status.id, now)
    if status.reblog_of_id is None and status.visibility != "direct":
        await _notify_subscribers(conn, status, author, silenced, now)
    if status.visibility == "direct":
        await record_direct_message(conn, status, author, silenced, now)


async def _outside_the_thread(
    conn: AsyncConnection,
    status: Status,
    followers: set[int],
    mentioned: list[tuple[Account, bool]],
) -> set[int]:
    """Followers who would see only half of a reply: Mastodon keeps a reply to someone out of
    the home feeds of followers who do not follow that someone too (unless mentioned)."""
    if status.in_reply_to_id is None:
        return set()
    parent = await status_by_id(conn, status.in_reply_to_id)
    if parent is None or parent.account_id == status.account_id:
        return set()
    parent_followers = set(await local_followers(conn, parent.account_id))
    return followers - parent_followers - {parent.account_id} - {a.id for a, _ in mentioned}


async def _public_streams(conn: AsyncConnection, status: Status, author: Account) -> None:
    if status.visibility != "public" or status.reblog_of_id is not None:
        return
    scope = "local" if author.is_local else "remote"
    streams = ["public", f"public:{scope}"]
    if await has_attachments(conn, status.id):
        streams += ["public:media", f"public:{scope}:media"]
    for tag in await tags_of(conn, status.id):
        streams.append(f"hashtag:{tag}")
        if author.is_local:
            streams.append(f"hashtag:local:{tag}")
    emit(conn, streams, "update", status.id)


async def _notify_reblog(
    conn: AsyncConnection, boost: Status, booster: Account, now: datetime
) -> None:
    original = await status_by_id(conn, boost.reblog_of_id or 0)
    if original is None:
        return
    author = await get_account(conn, original.account_id)
    if author is not None and author.is_local and author.id != booster.id:
        await notify(conn, author.id, "reblog", booster.id, original.id, now)


async def _notify_subscribers(
    conn: AsyncConnection, status: Status, author: Account, silenced: set[int], now: datetime
) -> None:
    """Followers who asked to be notified of this author's posts (`notify: true`)."""
    subscribers = (await conn.execute(_LOCAL_SUBSCRIBERS, {"account": author.id})).scalars()
    for subscriber in subscribers.all():
        if subscriber not in silenced:
            await notify(conn, subscriber, "status", author.id, status.id, now)


# Whether `recipient` mutes the notifications of `sender`, or either blocks the other.
_HIDDEN_FROM = (
    union_all(
        select(mutes.c.id).where(
            mutes.c.account_id == bindparam("recipient"),
            mutes.c.target_account_id == bindparam("sender"),
            mutes.c.hide_notifications.is_(True),
        ),
        select(blocks.c.id).where(
            or_(
                and_(
                    blocks.c.account_id == bindparam("recipient"),
                    blocks.c.target_account_id == bindparam("sender"),
                ),
                and_(
                    blocks.c.account_id == bindparam("sender"),
                    blocks.c.target_account_id == bindparam("recipient"),
                ),
            )
        ),
    )
    .limit(1)
    .execution_options(kith_direct=True)
)


async def notify(
    conn: AsyncConnection,
    recipient_id: int,
    kind: str,
    from_id: int,
    status_id: int | None,
    now: datetime,
) -> None:
    """A notification for a local account (once per event), unless it muted or blocked them."""
    recipient = await get_account(conn, recipient_id)
    if recipient is None or not recipient.is_local or recipient_id == from_id:
        return
    hidden = await conn.execute(_HIDDEN_FROM, {"recipient": recipient_id, "sender": from_id})
    if hidden.first() is not None:
        return
    notification_id = new_id(now)
    inserted = await insert_ignoring_duplicates(
        conn,
        notifications,
        {
            "id": notification_id,
            "account_id": recipient_id,
            "from_account_id": from_id,
            "type": kind,
            "status_id": status_id,
            "created_at": now,
        },
        ["account_id", "type", "from_account_id", "status_id"],
    )
    if inserted:
        emit(
            conn,
            [f"user:{recipient_id}", f"user:notification:{recipient_id}"],
            "notification",
            notification_id,
        )


async def readers_of(conn: AsyncConnection, status_id: int) -> list[int]:
    """Local accounts whose home feed holds the status (they hear of its edit or deletion)."""
    rows = await conn.execute(
        select(home_feed.c.account_id).where(home_feed.c.status_id == status_id)
    )
    return [row.account_id for row in rows]


async def announce_removal(conn: AsyncConnection, status: Status) -> None:
    """Before a status is deleted: tell the streams that showed it."""
    streams = [f"user:{reader}" for reader in await readers_of(conn, status.id)]
    if status.visibility == "public":
        streams += ["public", "public:local", "public:remote"]
        streams += ["public:media", "public:local:media", "public:remote:media"]
    if status.visibility == "direct":
        streams += [f"direct:{member}" for member in await chat_changed(conn, status)]
    emit(conn, streams, "delete", status.id)


async def announce_edit(conn: AsyncConnection, status: Status, now: datetime) -> None:
    """After an edit: streams update, and those who boosted it get an `update` notification."""
    streams = [f"user:{reader}" for reader in await readers_of(conn, status.id)]
    if status.visibility == "direct":
        streams += [f"direct:{member}" for member in await chat_changed(conn, status)]
    emit(conn, streams, "status.update", status.id)
    boosters = await conn.execute(
        select(statuses.c.account_id).where(statuses.c.reblog_of_id == status.id)
    )
    for row in boosters:
        await notify(conn, row.account_id, "update", status.account_id, status.id, now)
