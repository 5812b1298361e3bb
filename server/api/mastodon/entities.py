"""Mastodon entities (Account, Status, Relationship…), rendered in batches.

A timeline page shows 20 statuses, their boosted originals, authors, mentions, tags, counts
and the viewer's own flags. Each of those is loaded with one query for the whole page, so a
page costs a fixed number of queries however many statuses it holds (performance.md).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.identity.accounts import Account, account_from_row, select_accounts
from server.social.statuses import Status, status_from_row
from server.social.text import plain_text_to_html
from server.storage.ids import time_of_id
from server.storage.tables import (
    accounts,
    blocks,
    bookmarks,
    favourites,
    follows,
    mentions,
    mutes,
    status_tags,
    statuses,
)
from server.urls import Urls

# Every statement of a page, built once and run with the page's ids as an expanding
# parameter: building a statement costs more than SQLite takes to run it.
_IDS = bindparam("ids", expanding=True)
_ACCOUNTS_BY_IDS = select_accounts().where(accounts.c.id.in_(_IDS))
_STATUSES_BY_IDS = select(statuses).where(statuses.c.id.in_(_IDS))
_AUTHORS_OF = select(statuses.c.id, statuses.c.account_id).where(statuses.c.id.in_(_IDS))
_MENTIONS_OF = (
    select_accounts()
    .add_columns(mentions.c.status_id)
    .join(mentions, mentions.c.account_id == accounts.c.id)
    .where(mentions.c.status_id.in_(_IDS), mentions.c.silent.is_(False))
)
_TAGS_OF = select(status_tags.c.status_id, status_tags.c.name).where(
    status_tags.c.status_id.in_(_IDS)
)
_REBLOGGED_BY = select(statuses.c.reblog_of_id).where(
    statuses.c.account_id == bindparam("viewer"), statuses.c.reblog_of_id.in_(_IDS)
)
# Read from the (account_id, id) index alone: boosts count as posts, as on Mastodon, and the
# newest id tells the last post's time (ids are time-sorted), so no status row is read.
_POSTS_BY = (
    select(statuses.c.account_id, func.count(), func.max(statuses.c.id))
    .where(statuses.c.account_id.in_(_IDS))
    .group_by(statuses.c.account_id)
)
_FOLLOWERS_OF = (
    select(follows.c.target_account_id, func.count())
    .where(follows.c.target_account_id.in_(_IDS), follows.c.state == "accepted")
    .group_by(follows.c.target_account_id)
)
_FOLLOWING_OF = (
    select(follows.c.account_id, func.count())
    .where(follows.c.account_id.in_(_IDS), follows.c.state == "accepted")
    .group_by(follows.c.account_id)
)


@functools.cache
def _counter(column: Any) -> Any:
    return select(column, func.count()).where(column.in_(_IDS)).group_by(column)


@functools.cache
def _viewer_marks(table: Any) -> Any:
    return select(table.c.status_id).where(
        table.c.account_id == bindparam("viewer"), table.c.status_id.in_(_IDS)
    )


def mastodon_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, as Mastodon prints times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


class Presenter:
    """Renders entities for one viewer (None: anonymous) within one read transaction."""

    def __init__(self, conn: AsyncConnection, urls: Urls, viewer: Account | None) -> None:
        self.conn = conn
        self.urls = urls
        self.viewer = viewer

    # --- accounts ---------------------------------------------------------------------

    async def account(self, account: Account) -> dict[str, Any]:
        return (await self.accounts([account]))[0]

    async def accounts(self, found: Iterable[Account]) -> list[dict[str, Any]]:
        listed = list(found)
        stats = await _account_stats(self.conn, {a.id for a in listed})
        return [render_account(a, self.urls, stats.get(a.id, _NO_STATS)) for a in listed]

    async def credential_account(self, account: Account) -> dict[str, Any]:
        """The signed-in user's own Account, with its `source` (what they typed)."""
        entity = await self.account(account)
        pending = await self.conn.execute(
            select(func.count())
            .select_from(follows)
            .where(follows.c.target_account_id == account.id, follows.c.state == "requested")
        )
        entity["source"] = {
            "privacy": "public",
            "sensitive": False,
            "language": None,
            "note": account.note,
            "fields": [],
            "follow_requests_count": int(pending.scalar_one()),
            "hide_collections": False,
            "discoverable": account.is_discoverable,
            "indexable": account.is_indexable,
        }
        return entity

    async def accounts_by_id(self, ids: Iterable[int]) -> dict[int, Account]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = await self.conn.execute(_ACCOUNTS_BY_IDS, {"ids": list(wanted)})
        return {row.id: account_from_row(row) for row in rows}

    # --- statuses ---------------------------------------------------------------------

    async def status(self, status: Status) -> dict[str, Any]:
        return (await self.statuses([status]))[0]

    async def statuses(self, page: list[Status]) -> list[dict[str, Any]]:
        """Status entities for a page, boosts with their originals embedded."""
        originals = await self._statuses_by_id(s.reblog_of_id for s in page if s.reblog_of_id)
        shown = [s for s in page if s.reblog_of_id is None or s.reblog_of_id in originals]
        everything = {s.id: s for s in [*shown, *originals.values()]}
        ids = list(everything)
        parents = await self._parent_authors(everything.values())
        authors = await self.accounts_by_id(
            [s.account_id for s in everything.values()] + list(parents.values())
        )
        rendered_authors = dict(zip(authors, await self.accounts(authors.values()), strict=True))
        facts = _StatusFacts(
            mentions=await self._mentions(ids),
            tags=await self._tags(ids),
            replies=await _counts(self.conn, statuses.c.in_reply_to_id, ids),
            reblogs=await _counts(self.conn, statuses.c.reblog_of_id, ids),
            favourites=await _counts(self.conn, favourites.c.status_id, ids),
            favourited=await self._viewer_has(favourites, ids),
            reblogged=await self._viewer_reblogged(ids),
            bookmarked=await self._viewer_has(bookmarks, ids),
            parents=parents,
        )
        result = []
        for status in shown:
            original = originals.get(status.reblog_of_id or 0)
            embedded = self._status_entity(original, rendered_authors, facts) if original else None
            entity = self._status_entity(status, rendered_authors, facts)
            if embedded is not None:
                entity.update(_boost_fields(embedded))
                entity["reblog"] = embedded
            result.append(entity)
        return result

    def _status_entity(
        self, status: Status, authors: dict[int, dict[str, Any]], facts: _StatusFacts
    ) -> dict[str, Any]:
        parent_author = facts.parents.get(status.id)
        return {
            "id": str(status.id),
            "uri": status.uri,
            "url": status.url or status.uri,
            "created_at": mastodon_time(status.created_at),
            "edited_at": mastodon_time(status.edited_at) if status.edited_at else None,
            "account": authors[status.account_id],
            "content": status.content,
            "visibility": status.visibility,
            "sensitive": status.sensitive,
            "spoiler_text": status.spoiler_text,
            "language": status.language,
            "in_reply_to_id": str(status.in_reply_to_id) if status.in_reply_to_id else None,
            "in_reply_to_account_id": str(parent_author) if parent_author else None,
            "reblog": None,
            "replies_count": facts.replies.get(status.id, 0),
            "reblogs_count": facts.reblogs.get(status.id, 0),
            "favourites_count": facts.favourites.get(status.id, 0),
            "favourited": status.id in facts.favourited,
            "reblogged": status.id in facts.reblogged,
            "bookmarked": status.id in facts.bookmarked,
            "muted": False,
            "pinned": False,
            "mentions": facts.mentions.get(status.id, []),
            "tags": [
                {"name": name, "url": self.urls.tag(name)} for name in facts.tags.get(status.id, [])
            ],
            "emojis": [],
            "media_attachments": [],
            "card": None,
            "poll": None,
            "application": None,
            "filtered": [],
        }

    async def _statuses_by_id(self, ids: Iterable[int]) -> dict[int, Status]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = await self.conn.execute(_STATUSES_BY_IDS, {"ids": list(wanted)})
        return {row.id: status_from_row(row) for row in rows}

    async def _parent_authors(self, found: Iterable[Status]) -> dict[int, int]:
        """Status id → the account id of the status it replies to."""
        by_parent = {s.in_reply_to_id: s.id for s in found if s.in_reply_to_id}
        if not by_parent:
            return {}
        rows = await self.conn.execute(_AUTHORS_OF, {"ids": list(by_parent)})
        parent_author = {row.id: row.account_id for row in rows}
        return {
            child: parent_author[parent]
            for parent, child in by_parent.items()
            if parent in parent_author
        }

    async def _mentions(self, ids: list[int]) -> dict[int, list[dict[str, str]]]:
        if not ids:
            return {}
        rows = await self.conn.execute(_MENTIONS_OF, {"ids": ids})
        found: dict[int, list[dict[str, str]]] = {}
        for row in rows:
            account = account_from_row(row)
            found.setdefault(row.status_id, []).append(
                {
                    "id": str(account.id),
                    "username": account.username,
                    "acct": account.acct,
                    "url": account_url(account, self.urls),
                }
            )
        return found

    async def _tags(self, ids: list[int]) -> dict[int, list[str]]:
        if not ids:
            return {}
        rows = await self.conn.execute(_TAGS_OF, {"ids": ids})
        found: dict[int, list[str]] = {}
        for row in rows:
            found.setdefault(row.status_id, []).append(row.name)
        return found

    async def _viewer_has(self, table: Any, ids: list[int]) -> set[int]:
        if self.viewer is None or not ids:
            return set()
        rows = await self.conn.execute(_viewer_marks(table), {"viewer": self.viewer.id, "ids": ids})
        return {row[0] for row in rows}

    async def _viewer_reblogged(self, ids: list[int]) -> set[int]:
        if self.viewer is None or not ids:
            return set()
        rows = await self.conn.execute(_REBLOGGED_BY, {"viewer": self.viewer.id, "ids": ids})
        return {row.reblog_of_id for row in rows}

    # --- relationships ----------------------------------------------------------------

    async def relationships(self, targets: list[Account]) -> list[dict[str, Any]]:
        """The viewer's Relationship with each target (the viewer must be signed in)."""
        assert self.viewer is not None
        me = self.viewer.id
        ids = [t.id for t in targets]
        outgoing = {
            row.target_account_id: row
            for row in await self.conn.execute(
                select(follows).where(
                    follows.c.account_id == me, follows.c.target_account_id.in_(ids)
                )
            )
        }
        incoming = {
            row.account_id: row
            for row in await self.conn.execute(
                select(follows).where(
                    follows.c.target_account_id == me, follows.c.account_id.in_(ids)
                )
            )
        }
        blocking = await self._targets(blocks, ids)
        blocked_by = {
            row.account_id
            for row in await self.conn.execute(
                select(blocks.c.account_id).where(
                    blocks.c.target_account_id == me, blocks.c.account_id.in_(ids)
                )
            )
        }
        muted = {
            row.target_account_id: row.hide_notifications
            for row in await self.conn.execute(
                select(mutes.c.target_account_id, mutes.c.hide_notifications).where(
                    mutes.c.account_id == me, mutes.c.target_account_id.in_(ids)
                )
            )
        }
        result = []
        for target in targets:
            mine = outgoing.get(target.id)
            theirs = incoming.get(target.id)
            result.append(
                {
                    "id": str(target.id),
                    "following": bool(mine and mine.state == "accepted"),
                    "showing_reblogs": bool(mine and mine.show_reblogs),
                    "notifying": bool(mine and mine.notify),
                    "languages": None,
                    "followed_by": bool(theirs and theirs.state == "accepted"),
                    "blocking": target.id in blocking,
                    "blocked_by": target.id in blocked_by,
                    "muting": target.id in muted,
                    "muting_notifications": muted.get(target.id, False),
                    "requested": bool(mine and mine.state == "requested"),
                    "requested_by": bool(theirs and theirs.state == "requested"),
                    "domain_blocking": False,
                    "endorsed": False,
                    "note": "",
                }
            )
        return result

    async def _targets(self, table: Any, ids: list[int]) -> set[int]:
        assert self.viewer is not None
        rows = await self.conn.execute(
            select(table.c.target_account_id).where(
                table.c.account_id == self.viewer.id, table.c.target_account_id.in_(ids)
            )
        )
        return {row.target_account_id for row in rows}


class _StatusFacts:
    """What a page of statuses needs beyond their rows, each loaded in one query."""

    def __init__(self, **facts: Any) -> None:
        self.mentions: dict[int, list[dict[str, str]]] = facts["mentions"]
        self.tags: dict[int, list[str]] = facts["tags"]
        self.replies: dict[int, int] = facts["replies"]
        self.reblogs: dict[int, int] = facts["reblogs"]
        self.favourites: dict[int, int] = facts["favourites"]
        self.favourited: set[int] = facts["favourited"]
        self.reblogged: set[int] = facts["reblogged"]
        self.bookmarked: set[int] = facts["bookmarked"]
        self.parents: dict[int, int] = facts["parents"]


def _boost_fields(original: dict[str, Any]) -> dict[str, Any]:
    """A boost shows its original's flags, as Mastodon's boost entities do."""
    return {
        key: original[key] for key in ("favourited", "reblogged", "bookmarked", "muted", "pinned")
    }


async def _counts(conn: AsyncConnection, column: Any, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = await conn.execute(_counter(column), {"ids": ids})
    return {row[0]: int(row[1]) for row in rows}


class _AccountStats:
    def __init__(
        self,
        statuses: int = 0,
        followers: int = 0,
        following: int = 0,
        last_status_at: datetime | None = None,
    ) -> None:
        self.statuses = statuses
        self.followers = followers
        self.following = following
        self.last_status_at = last_status_at


_NO_STATS = _AccountStats()


async def _account_stats(conn: AsyncConnection, ids: set[int]) -> dict[int, _AccountStats]:
    """Statuses, followers and following counts, and the last post date, per account."""
    if not ids:
        return {}
    stats = {account_id: _AccountStats() for account_id in ids}
    rows = await conn.execute(_POSTS_BY, {"ids": list(ids)})
    for account_id, count, newest in rows:
        stats[account_id].statuses = int(count)
        stats[account_id].last_status_at = time_of_id(newest)
    for statement, attribute in ((_FOLLOWERS_OF, "followers"), (_FOLLOWING_OF, "following")):
        rows = await conn.execute(statement, {"ids": list(ids)})
        for account_id, count in rows:
            setattr(stats[account_id], attribute, int(count))
    return stats


def account_url(account: Account, urls: Urls) -> str:
    """Where a person's profile is shown to humans."""
    if account.is_local:
        return urls.profile(account)
    return account.url or account.uri or ""


def render_account(account: Account, urls: Urls, stats: _AccountStats = _NO_STATS) -> dict:
    """An Account entity as Mastodon documents it (ids as strings, dates as ISO 8601)."""
    avatar = urls.static("avatar-missing.png")
    header = urls.static("header-missing.png")
    note = plain_text_to_html(account.note) if account.is_local else account.note
    entity = {
        "id": str(account.id),
        "username": account.username,
        "acct": account.acct,
        "display_name": account.display_name,
        "locked": account.is_locked,
        "bot": account.is_bot,
        "discoverable": account.is_discoverable,
        "indexable": account.is_indexable,
        "group": account.actor_type == "Group",
        "created_at": mastodon_time(
            account.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        ),
        "note": note,
        "url": account_url(account, urls),
        "uri": urls.actor(account),
        "avatar": avatar,
        "avatar_static": avatar,
        "header": header,
        "header_static": header,
        "followers_count": stats.followers,
        "following_count": stats.following,
        "statuses_count": stats.statuses,
        "last_status_at": _day(stats.last_status_at) if stats.last_status_at else None,
        "hide_collections": False,
        "noindex": not account.is_indexable,
        "emojis": [],
        "roles": [],
        "fields": [],
    }
    if account.is_deleted:
        entity["suspended"] = True
    return entity
