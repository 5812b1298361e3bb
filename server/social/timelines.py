"""Reading statuses in pages: home, public, hashtag and account timelines, threads.

Pages follow Mastodon's cursors: `max_id` (older than), `since_id` (newer than, newest
first) and `min_id` (newer than, the oldest of them first, for catching up). Results are
always returned newest first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.identity.accounts import Account
from server.moderation import not_limited_for
from server.social.statuses import Status, status_from_row
from server.storage.tables import (
    accounts,
    blocks,
    follows,
    home_feed,
    media_attachments,
    mentions,
    mutes,
    status_tags,
    statuses,
)

# The hot path builds Status from each row by position (a mapping lookup per column costs
# more than SQLite takes to read the row), so it selects the columns in the fields' order.
_STATUS_COLUMNS = tuple(statuses.c[field.name] for field in fields(Status))
PAGE_LIMIT_DEFAULT = 20
PAGE_LIMIT_MAX = 40
THREAD_LIMIT = 200


@dataclass(frozen=True)
class PageRequest:
    """Mastodon's pagination cursors (ids are time-sorted) and a page size."""

    limit: int = PAGE_LIMIT_DEFAULT
    max_id: int | None = None
    since_id: int | None = None
    min_id: int | None = None


def paged(query: Select, column: ColumnElement, page: PageRequest) -> Select:
    """Restrict `query` to one page over `column` (an id that sorts by time)."""
    if page.max_id is not None:
        query = query.where(column < page.max_id)
    if page.since_id is not None:
        query = query.where(column > page.since_id)
    if page.min_id is not None:
        query = query.where(column > page.min_id)
        return query.order_by(column.asc()).limit(page.limit)
    return query.order_by(column.desc()).limit(page.limit)


def newest_first(rows: list, page: PageRequest) -> list:
    """A page read oldest first (`min_id`) turned the way clients expect it."""
    return list(reversed(rows)) if page.min_id is not None else rows


async def _statuses(conn: AsyncConnection, query: Select, page: PageRequest) -> list[Status]:
    rows = (await conn.execute(paged(query, statuses.c.id, page))).all()
    return [status_from_row(row) for row in newest_first(rows, page)]


def not_silenced_for(viewer: Account | None) -> list[ColumnElement[bool]]:
    """Hide authors the viewer blocks or mutes, or who block the viewer."""
    if viewer is None:
        return []
    author = statuses.c.account_id
    return [
        ~exists().where(blocks.c.account_id == viewer.id, blocks.c.target_account_id == author),
        ~exists().where(blocks.c.account_id == author, blocks.c.target_account_id == viewer.id),
        ~exists().where(mutes.c.account_id == viewer.id, mutes.c.target_account_id == author),
    ]


async def home_timeline(conn: AsyncConnection, viewer: Account, page: PageRequest) -> list[Status]:
    """The viewer's materialised home feed: one index range scan, then the statuses."""
    statement = _home_page(
        page.max_id is not None, page.since_id is not None, page.min_id is not None
    )
    parameters = {
        "viewer": viewer.id,
        "max_id": page.max_id,
        "since_id": page.since_id,
        "min_id": page.min_id,
        "limit": page.limit,
    }
    rows = (await conn.execute(statement, parameters)).all()
    return [Status(*row) for row in newest_first(rows, page)]


@functools.cache
def _home_page(has_max: bool, has_since: bool, has_min: bool) -> Select:
    """The home feed page query for one combination of cursors, built once (the hot path)."""
    feed = home_feed.c.status_id
    query = (
        select(*_STATUS_COLUMNS)
        .join(home_feed, feed == statuses.c.id)
        .where(home_feed.c.account_id == bindparam("viewer"))
    )
    if has_max:
        query = query.where(feed < bindparam("max_id"))
    if has_since:
        query = query.where(feed > bindparam("since_id"))
    if has_min:
        query = query.where(feed > bindparam("min_id"))
    order = feed.asc() if has_min else feed.desc()
    return query.order_by(order).limit(bindparam("limit", type_=Integer))


async def home_feed_size(conn: AsyncConnection, account: Account) -> int:
    query = select(func.count()).select_from(home_feed).where(home_feed.c.account_id == account.id)
    return int((await conn.execute(query)).scalar_one())


def _public_query(local: bool, remote: bool, viewer: Account | None = None) -> Select:
    query = (
        select(statuses)
        .join(accounts, accounts.c.id == statuses.c.account_id)
        .where(
            statuses.c.visibility == "public",
            statuses.c.reblog_of_id.is_(None),
            accounts.c.suspended_at.is_(None),
            not_limited_for(viewer),  # silenced authors: only their followers see them
        )
    )
    if local or remote:
        query = query.where(accounts.c.domain == "" if local else accounts.c.domain != "")
    return query


async def public_timeline(
    conn: AsyncConnection,
    viewer: Account | None,
    page: PageRequest,
    local: bool = False,
    remote: bool = False,
) -> list[Status]:
    """Public posts known to this node (not boosts), newest first."""
    query = _public_query(local, remote, viewer).where(*not_silenced_for(viewer))
    return await _statuses(conn, query, page)


async def tag_timeline(
    conn: AsyncConnection,
    viewer: Account | None,
    tag: str,
    page: PageRequest,
    local: bool = False,
    remote: bool = False,
) -> list[Status]:
    """Public posts carrying a hashtag (compared without case)."""
    query = (
        _public_query(local, remote, viewer)
        .join(status_tags, status_tags.c.status_id == statuses.c.id)
        .where(status_tags.c.name == tag.lower(), *not_silenced_for(viewer))
    )
    return await _statuses(conn, query, page)


async def account_timeline(
    conn: AsyncConnection,
    viewer: Account | None,
    author: Account,
    page: PageRequest,
    exclude_replies: bool = False,
    exclude_reblogs: bool = False,
    tagged: str | None = None,
    only_media: bool = False,
) -> list[Status]:
    """An account's statuses the viewer may see: public and unlisted to all, followers-only
    to accepted followers, direct only where the viewer is mentioned; none of a suspended
    account's (as Mastodon)."""
    if author.is_suspended:
        return []
    query = select(statuses).where(statuses.c.account_id == author.id)
    query = query.where(_visible_on_profile(viewer, author))
    if exclude_replies:
        # Mastodon keeps self-replies (threads) on the profile.
        query = query.where(
            or_(
                statuses.c.in_reply_to_id.is_(None),
                exists().where(
                    and_(
                        _parent.c.id == statuses.c.in_reply_to_id,
                        _parent.c.account_id == author.id,
                    )
                ),
            ),
            or_(statuses.c.in_reply_to_id.is_not(None), statuses.c.in_reply_to_uri.is_(None)),
        )
    if exclude_reblogs:
        query = query.where(statuses.c.reblog_of_id.is_(None))
    if tagged:
        query = query.where(
            exists().where(
                status_tags.c.status_id == statuses.c.id, status_tags.c.name == tagged.lower()
            )
        )
    if only_media:
        query = query.where(exists().where(media_attachments.c.status_id == statuses.c.id))
    return await _statuses(conn, query, page)


_parent = statuses.alias("parent")


def _visible_on_profile(viewer: Account | None, author: Account) -> ColumnElement[bool]:
    listed = statuses.c.visibility.in_(("public", "unlisted"))
    if viewer is None:
        return listed
    if viewer.id == author.id:
        return statuses.c.id.is_not(None)
    follower = exists().where(
        follows.c.account_id == viewer.id,
        follows.c.target_account_id == author.id,
        follows.c.state == "accepted",
    )
    mentioned = exists().where(
        mentions.c.status_id == statuses.c.id, mentions.c.account_id == viewer.id
    )
    return or_(listed, and_(statuses.c.visibility == "private", follower), mentioned)


async def ancestors(conn: AsyncConnection, status: Status) -> list[Status]:
    """The statuses above one in its thread, oldest first (as far as this node knows)."""
    found: list[Status] = []
    seen = {status.id}
    parent_id = status.in_reply_to_id
    while parent_id is not None and parent_id not in seen and len(found) < THREAD_LIMIT:
        row = (await conn.execute(select(statuses).where(statuses.c.id == parent_id))).first()
        if row is None:
            break
        parent = status_from_row(row)
        found.append(parent)
        seen.add(parent.id)
        parent_id = parent.in_reply_to_id
    return list(reversed(found))


async def descendants(conn: AsyncConnection, status: Status) -> list[Status]:
    """The replies below a status, depth first in reply order (Mastodon's thread order)."""
    found: list[Status] = []
    frontier = [status.id]
    children: dict[int, list[Status]] = {}
    seen = {status.id}
    while frontier and len(seen) <= THREAD_LIMIT:
        rows = await conn.execute(
            select(statuses)
            .where(statuses.c.in_reply_to_id.in_(frontier), statuses.c.reblog_of_id.is_(None))
            .order_by(statuses.c.id)
        )
        level = [status_from_row(row) for row in rows if row.id not in seen]
        for reply in level:
            children.setdefault(reply.in_reply_to_id or 0, []).append(reply)
            seen.add(reply.id)
        frontier = [reply.id for reply in level]

    def walk(parent_id: int) -> None:
        for reply in children.get(parent_id, []):
            if len(found) < THREAD_LIMIT:
                found.append(reply)
                walk(reply.id)

    walk(status.id)
    return found
