"""Mastodon entities (Account, Status, Relationship…), rendered in batches.

A timeline page shows 20 statuses, their boosted originals, authors, mentions, tags, counts
and the viewer's own flags. Each of those is loaded with one query for the whole page, so a
page costs a fixed number of queries however many statuses it holds (performance.md).
"""

from __future__ import annotations

import functools
from bisect import insort
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Select,
    String,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.addressing import PUBLIC_VISIBILITY, UNLISTED
from server.identity.accounts import Account, account_from_selected_row, select_accounts
from server.social.actors import field_html, profile_fields
from server.social.media import Attachment, attachment_url, attachments_of, preview_url
from server.social.statuses import Status, status_from_row
from server.social.text import plain_text_to_html
from server.storage.ids import time_of_id
from server.storage.tables import (
    account_stats,
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
# Counters kept by the database (migration 0006): boosts count as posts, as on Mastodon, and
# the newest id tells the last post's time (ids are time-sorted).
_STATS_OF = select(
    account_stats.c.account_id,
    account_stats.c.statuses_count,
    account_stats.c.followers_count,
    account_stats.c.following_count,
    account_stats.c.last_status_id,
).where(account_stats.c.account_id.in_(_IDS))


@functools.cache
def _status_facts(signed_in: bool) -> CompoundSelect:
    """Everything a page of statuses needs beyond their rows and authors, in one statement.

    Rows are (kind, status_id, number, name): counts of replies (r), boosts (b) and
    favourites (f); tags (t); unsilenced mentions (m, the account id); the authors of the
    statuses replied to (p, by their ids); and, for a signed-in viewer, their favourites (F),
    boosts (R) and bookmarks (K). One statement instead of nine: each costs more in
    SQLAlchemy than in SQLite.
    """
    no_number, no_name = cast(null(), BigInteger), cast(null(), String)

    def counted(kind: str, column: Any) -> Select:
        return _fact(kind, column, func.count(), no_name).where(column.in_(_IDS)).group_by(column)

    def marked(kind: str, table: Any, column: Any) -> Select:
        mine = table.c.account_id == bindparam("viewer")
        return _fact(kind, column, no_number, no_name).where(mine, column.in_(_IDS))

    parts = [
        # As Mastodon: only public and unlisted replies count (a direct or followers-only
        # reply is not everyone's business).
        counted("r", statuses.c.in_reply_to_id).where(statuses.c.visibility.in_(_LISTED)),
        counted("b", statuses.c.reblog_of_id),
        counted("f", favourites.c.status_id),
        _fact("t", status_tags.c.status_id, no_number, status_tags.c.name).where(
            status_tags.c.status_id.in_(_IDS)
        ),
        _fact("m", mentions.c.status_id, mentions.c.account_id, no_name).where(
            mentions.c.status_id.in_(_IDS), mentions.c.silent.is_(False)
        ),
        _fact("p", statuses.c.id, statuses.c.account_id, no_name).where(
            statuses.c.id.in_(bindparam("parents", expanding=True))
        ),
    ]
    if signed_in:
        parts += [
            marked("F", favourites, favourites.c.status_id),
            marked("R", statuses, statuses.c.reblog_of_id),
            marked("K", bookmarks, bookmarks.c.status_id),
        ]
    # No ORDER BY: SQLite would sort each part in a temporary B-tree (it doubles the cost);
    # `_StatusFacts` orders mentions and tags itself.
    return union_all(*parts)


_FACT_COLUMNS = ("kind", "status_id", "number", "name")


def _fact(kind: str, status_id: Any, number: Any, name: Any) -> Select:
    columns = (literal_column(f"'{kind}'"), status_id, number, name)
    return select(*(c.label(label) for c, label in zip(columns, _FACT_COLUMNS, strict=True)))


def mastodon_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, as Mastodon prints times."""
    # isoformat is several times faster than strftime, and a page prints some sixty times.
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


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
            "fields": [
                {"name": name, "value": value, "verified_at": None}
                for name, value in profile_fields(account)
            ],
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
        # A page reads some forty accounts: built by position, not by a lookup per column.
        return {row[0]: account_from_selected_row(row) for row in rows}

    # --- statuses ---------------------------------------------------------------------

    async def status(self, status: Status) -> dict[str, Any]:
        return (await self.statuses([status]))[0]

    async def statuses(self, page: list[Status]) -> list[dict[str, Any]]:
        """Status entities for a page, boosts with their originals embedded."""
        originals = await self._statuses_by_id(s.reblog_of_id for s in page if s.reblog_of_id)
        shown = [s for s in page if s.reblog_of_id is None or s.reblog_of_id in originals]
        everything = {s.id: s for s in [*shown, *originals.values()]}
        if not everything:
            return []
        facts = await self._facts(list(everything.values()))
        author_ids = dict.fromkeys(s.account_id for s in everything.values())
        # Authors and mentioned accounts in one query; only authors are rendered in full.
        known = await self.accounts_by_id([*author_ids, *facts.mentioned])
        authors = [known[a] for a in author_ids if a in known]
        rendered = await self.accounts(authors)
        rendered_authors = {a.id: entity for a, entity in zip(authors, rendered, strict=True)}
        facts.name_mentions(known, self.urls)
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
            "media_attachments": [
                render_media(a, self.urls) for a in facts.media.get(status.id, [])
            ],
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

    async def _facts(self, found: list[Status]) -> _StatusFacts:
        parameters = {
            "ids": [s.id for s in found],
            "parents": list({s.in_reply_to_id for s in found if s.in_reply_to_id}),
            "viewer": self.viewer.id if self.viewer else None,
        }
        rows = await self.conn.execute(_status_facts(self.viewer is not None), parameters)
        facts = _StatusFacts()
        authors_of: dict[int, int] = {}
        for kind, status_id, number, name in rows:
            if kind == "p":
                authors_of[status_id] = number
            else:
                facts.add(kind, status_id, number, name)
        for status in found:
            if status.in_reply_to_id in authors_of:
                facts.parents[status.id] = authors_of[status.in_reply_to_id]
        facts.media = await attachments_of(self.conn, parameters["ids"])
        return facts

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
    """What a page of statuses needs beyond their rows, from one `_status_facts` statement."""

    def __init__(self) -> None:
        self.mentions: dict[int, list[dict[str, str]]] = {}
        self.mentioned: dict[int, list[int]] = {}  # account id → statuses mentioning it
        self.tags: dict[int, list[str]] = {}
        self.replies: dict[int, int] = {}
        self.reblogs: dict[int, int] = {}
        self.favourites: dict[int, int] = {}
        self.favourited: set[int] = set()
        self.reblogged: set[int] = set()
        self.bookmarked: set[int] = set()
        self.parents: dict[int, int] = {}  # status id → author of the status it replies to
        self.media: dict[int, list[Attachment]] = {}

    def add(self, kind: str, status_id: int, number: int | None, name: str | None) -> None:
        """One row of `_status_facts`."""
        if kind in _COUNTS:
            getattr(self, _COUNTS[kind])[status_id] = int(number or 0)
        elif kind in _MARKS:
            getattr(self, _MARKS[kind]).add(status_id)
        elif kind == "t":
            insort(self.tags.setdefault(status_id, []), name or "")
        elif kind == "m" and number is not None:
            self.mentioned.setdefault(number, []).append(status_id)

    def name_mentions(self, known: dict[int, Account], urls: Urls) -> None:
        """Mention entities, once the mentioned accounts are loaded (unknown ones are left out)."""
        for account_id, status_ids in sorted(self.mentioned.items()):
            account = known.get(account_id)
            if account is None:
                continue
            mention = {
                "id": str(account.id),
                "username": account.username,
                "acct": account.acct,
                "url": account_url(account, urls),
            }
            for status_id in status_ids:
                self.mentions.setdefault(status_id, []).append(mention)


_COUNTS = {"r": "replies", "b": "reblogs", "f": "favourites"}
_LISTED = (PUBLIC_VISIBILITY, UNLISTED)
_MARKS = {"F": "favourited", "R": "reblogged", "K": "bookmarked"}


def _boost_fields(original: dict[str, Any]) -> dict[str, Any]:
    """A boost shows its original's flags, as Mastodon's boost entities do."""
    return {
        key: original[key] for key in ("favourited", "reblogged", "bookmarked", "muted", "pinned")
    }


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
    rows = await conn.execute(_STATS_OF, {"ids": list(ids)})
    return {
        account_id: _AccountStats(
            statuses, followers, following, time_of_id(last) if last is not None else None
        )
        for account_id, statuses, followers, following, last in rows
    }


def account_url(account: Account, urls: Urls) -> str:
    """Where a person's profile is shown to humans."""
    if account.is_local:
        return urls.profile(account)
    return account.url or account.uri or ""


def render_account(account: Account, urls: Urls, stats: _AccountStats = _NO_STATS) -> dict:
    """An Account entity as Mastodon documents it (ids as strings, dates as ISO 8601)."""
    avatar = urls.media(account.avatar_file) if account.avatar_file else None
    avatar = avatar or urls.static("avatar-missing.png")
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
        "fields": [
            {"name": name, "value": field_html(value), "verified_at": None}
            for name, value in profile_fields(account)
        ]
        if account.profile_fields
        else [],
    }
    if account.is_deleted or account.is_suspended:
        entity["suspended"] = True
    if account.silenced_at is not None:
        entity["limited"] = True  # Mastodon's word for a silenced account
    return entity


def render_media(attachment: Attachment, urls: Urls) -> dict[str, Any]:
    """A MediaAttachment entity; a peer's attachment points at its own server's URL."""
    return {
        "id": str(attachment.id),
        "type": attachment.type,
        "url": attachment_url(attachment, urls),
        "preview_url": preview_url(attachment, urls),
        "remote_url": attachment.remote_url,
        "preview_remote_url": None,
        "text_url": None,
        "meta": attachment.meta,
        "description": attachment.description,
        "blurhash": attachment.blurhash,
    }
