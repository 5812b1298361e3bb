"""Statuses: storing them (local and remote), rendering them as Notes, and who they reach."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from protocol.activities import NoteDocument
from protocol.addressing import Audience, audience_for
from server.identity.accounts import Account, account_from_row, get_account, select_accounts
from server.social.media import note_attachments
from server.storage.ids import new_id
from server.storage.tables import (
    accounts,
    chat_payments,
    follows,
    mentions,
    status_edits,
    status_tags,
    statuses,
    tombstones,
)
from server.urls import Urls


@dataclass(frozen=True)
class Status:
    """A post (or a boost, when `reblog_of_id` is set)."""

    id: int
    uri: str
    url: str | None
    account_id: int
    in_reply_to_id: int | None
    in_reply_to_uri: str | None
    reblog_of_id: int | None
    content: str
    text: str
    spoiler_text: str
    sensitive: bool
    visibility: str
    language: str | None
    context_uri: str | None
    created_at: datetime
    edited_at: datetime | None


@dataclass(frozen=True)
class NewStatus:
    """What a status is made of, before it is stored."""

    uri: str
    account_id: int
    content: str
    visibility: str
    created_at: datetime
    text: str = ""
    url: str | None = None
    spoiler_text: str = ""
    sensitive: bool = False
    in_reply_to_id: int | None = None
    in_reply_to_uri: str | None = None
    reblog_of_id: int | None = None
    language: str | None = None
    context_uri: str | None = None
    edited_at: datetime | None = None


_STATUS_FIELDS = tuple(field.name for field in fields(Status))


def status_from_row(row: object) -> Status:
    """A Status from a row of `statuses` (extra selected columns are ignored)."""
    mapping = row._mapping  # type: ignore[attr-defined]
    return Status(**{name: mapping[name] for name in _STATUS_FIELDS})


async def insert_status(
    conn: AsyncConnection,
    status_id: int,
    new: NewStatus,
    mentioned: dict[int, bool] | None = None,
    tags: list[str] | None = None,
) -> Status | None:
    """Store a status once (by uri); None if it exists already. `mentioned`: id → silent."""
    values = {"id": status_id, **new.__dict__}
    if not await insert_ignoring_duplicates(conn, statuses, values, keys=["uri"]):
        return None
    for account_id, silent in (mentioned or {}).items():
        await conn.execute(
            _ADD_MENTION, {"status_id": status_id, "account_id": account_id, "silent": silent}
        )
    for name in dict.fromkeys(tags or []):
        await conn.execute(_ADD_TAG, {"status_id": status_id, "name": name[:255]})
    return await status_by_id(conn, status_id)


# Hot statements built once, run with parameters (building a statement costs more than running
# it); on SQLite past SQLAlchemy's execution machinery (`kith_direct`: server/storage/direct.py).
_DIRECT = {"kith_direct": True}
_BY_ID = select(statuses).where(statuses.c.id == bindparam("id")).execution_options(**_DIRECT)
_BY_URI = select(statuses).where(statuses.c.uri == bindparam("uri")).execution_options(**_DIRECT)
_ADD_MENTION = insert(mentions).execution_options(**_DIRECT)
_ADD_TAG = insert(status_tags).execution_options(**_DIRECT)
_TOMBSTONED = (
    select(tombstones.c.uri)
    .where(tombstones.c.uri == bindparam("uri"))
    .execution_options(**_DIRECT)
)
_MENTIONED = (
    select_accounts()
    .add_columns(mentions.c.silent)
    .join(mentions, mentions.c.account_id == accounts.c.id)
    .where(mentions.c.status_id == bindparam("status"))
    .order_by(accounts.c.id)
    .execution_options(**_DIRECT)
)
_TAGS = (
    select(status_tags.c.name)
    .where(status_tags.c.status_id == bindparam("status"))
    .execution_options(**_DIRECT)
)


async def status_by_id(conn: AsyncConnection, status_id: int) -> Status | None:
    row = (await conn.execute(_BY_ID, {"id": status_id})).first()
    return status_from_row(row) if row else None


async def status_by_uri(conn: AsyncConnection, uri: str) -> Status | None:
    row = (await conn.execute(_BY_URI, {"uri": uri})).first()
    return status_from_row(row) if row else None


async def boost_by(conn: AsyncConnection, account_id: int, status_id: int) -> Status | None:
    row = (
        await conn.execute(
            select(statuses).where(
                statuses.c.account_id == account_id, statuses.c.reblog_of_id == status_id
            )
        )
    ).first()
    return status_from_row(row) if row else None


async def mentioned_accounts(conn: AsyncConnection, status_id: int) -> list[tuple[Account, bool]]:
    """The accounts a status mentions, with whether the mention is silent (addressed only)."""
    rows = await conn.execute(_MENTIONED, {"status": status_id})
    return [(account_from_row(row), row.silent) for row in rows]


async def tags_of(conn: AsyncConnection, status_id: int) -> list[str]:
    rows = await conn.execute(_TAGS, {"status": status_id})
    return [row.name for row in rows]


async def is_tombstoned(conn: AsyncConnection, uri: str) -> bool:
    row = await conn.execute(_TOMBSTONED, {"uri": uri})
    return row.first() is not None


async def remove_status(
    conn: AsyncConnection, status: Status, owner_uri: str, now: datetime
) -> None:
    """Delete a status (its boosts, likes and mentions go with it) and remember its uri."""
    await conn.execute(delete(statuses).where(statuses.c.id == status.id))
    await insert_ignoring_duplicates(
        conn,
        tombstones,
        {"uri": status.uri, "account_uri": owner_uri, "deleted_at": now},
        keys=["uri"],
    )


async def update_status_content(
    conn: AsyncConnection,
    status: Status,
    content: str,
    spoiler_text: str,
    sensitive: bool,
    edited_at: datetime,
    text: str = "",
) -> None:
    """Replace a post's text, keeping the version it replaces for its edit history."""
    await conn.execute(
        insert(status_edits).values(
            id=new_id(edited_at),
            status_id=status.id,
            content=status.content,
            spoiler_text=status.spoiler_text,
            sensitive=status.sensitive,
            created_at=status.edited_at or status.created_at,
        )
    )
    await conn.execute(
        update(statuses)
        .where(statuses.c.id == status.id)
        .values(
            content=content,
            text=text,
            spoiler_text=spoiler_text,
            sensitive=sensitive,
            edited_at=edited_at,
        )
    )


async def remote_follower_uris(conn: AsyncConnection, account_id: int) -> list[str]:
    """The actor ids of an account's accepted remote followers (delivery fans out to them)."""
    rows = await conn.execute(
        select(accounts.c.uri)
        .join(follows, follows.c.account_id == accounts.c.id)
        .where(
            follows.c.target_account_id == account_id,
            follows.c.state == "accepted",
            accounts.c.domain != "",
            accounts.c.deleted_at.is_(None),
        )
    )
    return [row.uri for row in rows if row.uri]


async def audience_of(
    conn: AsyncConnection, status: Status, author: Account, urls: Urls
) -> Audience:
    """The `to`/`cc` a stored status was (or would be) addressed with."""
    mentioned = await mentioned_accounts(conn, status.id)
    followers = urls.followers(author) or ""
    return audience_for(
        status.visibility, followers, [urls.actor(a) for a, silent in mentioned if not silent]
    )


async def note_document(conn: AsyncConnection, status: Status, urls: Urls) -> NoteDocument:
    """A local status as the Note that federates."""
    author = await get_account(conn, status.account_id)
    assert author is not None
    mentioned = [(a, s) for a, s in await mentioned_accounts(conn, status.id) if not s]
    parent_uri = status.in_reply_to_uri
    return NoteDocument(
        note_id=status.uri,
        url=status.url or status.uri,
        attributed_to=urls.actor(author),
        content_html=status.content,
        published=status.created_at,
        audience=await audience_of(conn, status, author, urls),
        in_reply_to=parent_uri,
        summary=status.spoiler_text or None,
        sensitive=status.sensitive,
        context=status.context_uri,
        updated=status.edited_at,
        mentions=tuple(
            (urls.actor(a), f"@{a.username}@{a.domain or urls.domain}") for a, _ in mentioned
        ),
        hashtags=tuple((f"#{name}", urls.tag(name)) for name in await tags_of(conn, status.id)),
        language=status.language,
        attachments=await note_attachments(conn, status.id, urls),
        payment=await conn.scalar(
            select(chat_payments.c.payment_uri).where(chat_payments.c.status_id == status.id)
        ),
    )


async def statuses_of(
    conn: AsyncConnection,
    account_id: int,
    visibilities: tuple[str, ...],
    limit: int,
    max_id: int | None,
) -> list[Status]:
    """An account's statuses of these visibilities, newest first, below `max_id`."""
    query = (
        select(statuses)
        .where(statuses.c.account_id == account_id, statuses.c.visibility.in_(visibilities))
        .order_by(statuses.c.id.desc())
        .limit(limit)
    )
    if max_id is not None:
        query = query.where(statuses.c.id < max_id)
    return [status_from_row(row) for row in await conn.execute(query)]


async def author_of(conn: AsyncConnection, status: Status) -> Account:
    row = (await conn.execute(select_accounts().where(accounts.c.id == status.account_id))).one()
    return account_from_row(row)
