"""Media attachments as rows: uploads, attaching them to posts, and peers' attachments.

An upload belongs to its uploader until it is attached to one of their posts; nobody else
can attach it. Peers' attachments are stored with the URL they came from; a picture copied
here (server/social/remote_media.py) also has its files, the others stay links to the peer.
A file is served only while a row names it, so deleting a post (however it goes) ends its
pictures' URLs at once; `prune_orphan_files` then deletes the files no row names.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.activities import AttachmentDocument, read_attachments
from server.media import (
    CONTENT_TYPES,
    ProcessedImage,
    Size,
    is_file_name,
    media_dir,
    remove_files,
)
from server.storage.engine import Database
from server.storage.ids import new_id
from server.storage.tables import accounts, media_attachments, statuses
from server.urls import Urls

ATTACHMENTS_PER_STATUS_MAX = 4  # Mastodon's limit for local posts
REMOTE_ATTACHMENTS_MAX = 16  # Mastodon keeps up to 16 of a peer's attachments
DESCRIPTION_LENGTH_MAX = 1500  # Mastodon's limit for alt text
# Uploads never attached are deleted after this long (Mastodon: one day).
UNATTACHED_KEEP = timedelta(days=1)
_PRUNE_BATCH = 500


class InvalidMedia(ValueError):
    """Media that cannot be used as asked; the message says why."""


@dataclass(frozen=True)
class Attachment:
    """One picture (local upload or a peer's reference)."""

    id: int
    account_id: int
    status_id: int | None
    position: int
    type: str
    content_type: str
    file_name: str | None
    preview_name: str | None
    remote_url: str | None
    description: str | None
    blurhash: str | None
    meta: dict[str, Any]


def _from_row(row: Any) -> Attachment:
    return Attachment(
        id=row.id,
        account_id=row.account_id,
        status_id=row.status_id,
        position=row.position,
        type=row.type,
        content_type=row.content_type,
        file_name=row.file_name,
        preview_name=row.preview_name,
        remote_url=row.remote_url,
        description=row.description,
        blurhash=row.blurhash,
        meta=json.loads(row.meta),
    )


def parse_focus(text: str) -> dict[str, float]:
    """Mastodon's `focus` parameter, "x,y" with each in -1.0..1.0."""
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise InvalidMedia('focus must be "x,y" with two numbers from -1.0 to 1.0') from None
    if not (-1 <= x <= 1 and -1 <= y <= 1):
        raise InvalidMedia("focus coordinates must be from -1.0 to 1.0")
    return {"x": round(x, 2), "y": round(y, 2)}


async def store_upload(
    conn: AsyncConnection,
    account_id: int,
    image: ProcessedImage,
    names: tuple[str, str],
    description: str | None,
    focus: dict[str, float] | None,
    now: datetime,
) -> Attachment:
    """Record a processed upload (its files are already written), unattached."""
    meta: dict[str, Any] = {"original": image.size.meta(), "small": image.preview_size.meta()}
    if focus is not None:
        meta["focus"] = focus
    media_id = new_id(now)
    await conn.execute(
        insert(media_attachments).values(
            id=media_id,
            account_id=account_id,
            status_id=None,
            position=0,
            type="image",
            content_type=image.content_type,
            file_name=names[0],
            preview_name=names[1],
            remote_url=None,
            description=description or None,
            blurhash=image.blurhash,
            meta=json.dumps(meta),
            created_at=now,
        )
    )
    found = await media_by_id(conn, media_id)
    assert found is not None
    return found


async def media_by_id(conn: AsyncConnection, media_id: int) -> Attachment | None:
    row = (
        await conn.execute(select(media_attachments).where(media_attachments.c.id == media_id))
    ).first()
    return _from_row(row) if row else None


async def own_unattached(conn: AsyncConnection, account_id: int, media_id: int) -> Attachment:
    """An upload of this account not yet in a post; LookupError otherwise (others' included)."""
    found = await media_by_id(conn, media_id)
    if found is None or found.account_id != account_id or found.status_id is not None:
        raise LookupError(media_id)
    return found


async def describe(
    conn: AsyncConnection,
    attachment: Attachment,
    description: str | None,
    focus: dict[str, float] | None,
) -> Attachment:
    """Change an upload's description and/or focus (None: unchanged)."""
    values: dict[str, Any] = {}
    if description is not None:
        values["description"] = description or None
    if focus is not None:
        values["meta"] = json.dumps({**attachment.meta, "focus": focus})
    if values:
        await conn.execute(
            update(media_attachments)
            .where(media_attachments.c.id == attachment.id)
            .values(**values)
        )
    found = await media_by_id(conn, attachment.id)
    assert found is not None
    return found


def checked_media_ids(raw: Any) -> list[int]:
    """The `media_ids` of a new post: at most four decimal ids, no repeats."""
    values = raw if isinstance(raw, list) else [raw]
    ids: list[int] = []
    for value in values:
        text = str(value).strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise InvalidMedia(f"media id {text[:30]!r} is not an id")
        ids.append(int(text))
    ids = list(dict.fromkeys(ids))
    if len(ids) > ATTACHMENTS_PER_STATUS_MAX:
        raise InvalidMedia(f"a post can have at most {ATTACHMENTS_PER_STATUS_MAX} attachments")
    return ids


async def attach(
    conn: AsyncConnection, account_id: int, status_id: int, media_ids: list[int]
) -> None:
    """Attach the uploader's own unattached uploads to their new post, in the order given."""
    for position, media_id in enumerate(media_ids):
        result = await conn.execute(
            update(media_attachments)
            .where(
                media_attachments.c.id == media_id,
                media_attachments.c.account_id == account_id,
                media_attachments.c.status_id.is_(None),
            )
            .values(status_id=status_id, position=position)
        )
        # Someone else's, attached already (maybe by a concurrent post), or unknown: refused
        # the same way, so another user's upload ids reveal nothing.
        if result.rowcount != 1:
            raise InvalidMedia(f"media {media_id} is not an unattached upload of yours")


async def replace_attachments(
    conn: AsyncConnection, account_id: int, status_id: int, media_ids: list[int]
) -> None:
    """An edit's new list: kept pictures are reordered, new ones must be the author's own
    unattached uploads, dropped ones become unattached uploads again (as on Mastodon, whose
    edit history keeps them, their URLs stay valid)."""
    current = {a.id for a in (await attachments_of(conn, [status_id])).get(status_id, [])}
    dropped = current - set(media_ids)
    if dropped:
        await conn.execute(
            update(media_attachments)
            .where(media_attachments.c.id.in_(dropped))
            .values(status_id=None, position=0)
        )
    new = [media_id for media_id in media_ids if media_id not in current]
    await attach(conn, account_id, status_id, new)
    for position, media_id in enumerate(media_ids):
        await conn.execute(
            update(media_attachments)
            .where(media_attachments.c.id == media_id)
            .values(position=position)
        )


async def has_attachments(conn: AsyncConnection, status_id: int) -> bool:
    query = select(media_attachments.c.id).where(media_attachments.c.status_id == status_id)
    return (await conn.execute(query.limit(1))).first() is not None


_OF_STATUSES = (
    select(media_attachments)
    .where(media_attachments.c.status_id.in_(bindparam("ids", expanding=True)))
    .order_by(media_attachments.c.status_id, media_attachments.c.position)
)


async def attachments_of(
    conn: AsyncConnection, status_ids: Iterable[int]
) -> dict[int, list[Attachment]]:
    """Each status's attachments in order, for a page of statuses in one query."""
    ids = list(set(status_ids))
    if not ids:
        return {}
    found: dict[int, list[Attachment]] = {}
    for row in await conn.execute(_OF_STATUSES, {"ids": ids}):
        found.setdefault(row.status_id, []).append(_from_row(row))
    return found


async def file_names_of(conn: AsyncConnection, status_id: int) -> list[str]:
    """The stored files of a local status's pictures (to delete them with the status)."""
    found = (await attachments_of(conn, [status_id])).get(status_id, [])
    return [name for a in found for name in (a.file_name, a.preview_name) if name]


def attachment_url(attachment: Attachment, urls: Urls) -> str:
    if attachment.file_name:
        return urls.media(attachment.file_name)
    return attachment.remote_url or ""


def preview_url(attachment: Attachment, urls: Urls) -> str:
    if attachment.preview_name:
        return urls.media(attachment.preview_name)
    return attachment.remote_url or ""


def as_document(attachment: Attachment, urls: Urls) -> AttachmentDocument:
    """A local attachment as the `Document` its post federates with."""
    original = attachment.meta.get("original") or {}
    focus = attachment.meta.get("focus")
    return AttachmentDocument(
        media_type=attachment.content_type,
        url=attachment_url(attachment, urls),
        name=attachment.description,
        blurhash=attachment.blurhash,
        width=original.get("width"),
        height=original.get("height"),
        focal_point=(focus["x"], focus["y"]) if focus else None,
    )


async def note_attachments(
    conn: AsyncConnection, status_id: int, urls: Urls
) -> tuple[AttachmentDocument, ...]:
    found = (await attachments_of(conn, [status_id])).get(status_id, [])
    return tuple(as_document(a, urls) for a in found)


def _remote_type(media_type: str) -> str:
    kind = media_type.partition("/")[0].lower()
    return {"image": "image", "video": "video", "audio": "audio"}.get(kind, "unknown")


def remote_attachments(attachment_value: Any) -> list[AttachmentDocument]:
    """The attachments of a peer's post that are kept (the first REMOTE_ATTACHMENTS_MAX)."""
    return read_attachments(attachment_value, REMOTE_ATTACHMENTS_MAX)


@dataclass(frozen=True)
class Copy:
    """A peer's picture copied here: its files, made as an upload's are."""

    content_type: str
    names: tuple[str, str]
    size: Size
    preview_size: Size
    blurhash: str


async def copied_urls(conn: AsyncConnection, status_uri: str) -> set[str]:
    """The URLs of a stored post's pictures that are copied here already."""
    rows = await conn.execute(
        select(media_attachments.c.remote_url)
        .join(statuses, statuses.c.id == media_attachments.c.status_id)
        .where(statuses.c.uri == status_uri, media_attachments.c.file_name.is_not(None))
    )
    return {row.remote_url for row in rows if row.remote_url}


async def _kept_copies(conn: AsyncConnection, status_id: int) -> dict[str, Copy]:
    found = (await attachments_of(conn, [status_id])).get(status_id, [])
    copies = {}
    for a in found:
        if a.remote_url and a.file_name and a.preview_name:
            original, small = a.meta.get("original") or {}, a.meta.get("small") or {}
            copies[a.remote_url] = Copy(
                a.content_type,
                (a.file_name, a.preview_name),
                Size(original.get("width", 0), original.get("height", 0)),
                Size(small.get("width", 0), small.get("height", 0)),
                a.blurhash or "",
            )
    return copies


async def store_remote(
    conn: AsyncConnection,
    account_id: int,
    status_id: int,
    attachment_value: Any,
    now: datetime,
    copies: Mapping[str, Copy] | None = None,
) -> None:
    """Record a peer's post's attachments (replacing any stored before): the pictures copied
    here (`copies`, by URL, and those an earlier version had) with their files, the others
    as links to the peer."""
    copies = {**await _kept_copies(conn, status_id), **(copies or {})}
    await conn.execute(delete(media_attachments).where(media_attachments.c.status_id == status_id))
    for position, document in enumerate(remote_attachments(attachment_value)):
        copy = copies.get(document.url)
        meta: dict[str, Any] = {}
        if copy is not None:
            meta = {"original": copy.size.meta(), "small": copy.preview_size.meta()}
        elif document.width and document.height:
            size = {"width": document.width, "height": document.height}
            meta["original"] = {
                **size,
                "size": f"{document.width}x{document.height}",
                "aspect": round(document.width / document.height, 6),
            }
        if document.focal_point is not None:
            meta["focus"] = {"x": document.focal_point[0], "y": document.focal_point[1]}
        await conn.execute(
            insert(media_attachments).values(
                id=new_id(now),
                account_id=account_id,
                status_id=status_id,
                position=position,
                type="image" if copy else _remote_type(document.media_type),
                content_type=copy.content_type
                if copy
                else document.media_type or "application/octet-stream",
                file_name=copy.names[0] if copy else None,
                preview_name=copy.names[1] if copy else None,
                remote_url=document.url,
                description=document.name,
                blurhash=copy.blurhash if copy else document.blurhash,
                meta=json.dumps(meta),
                created_at=now,
            )
        )


async def file_visibility(conn: AsyncConnection, name: str) -> str | None:
    """The visibility of the post a stored file belongs to ("" for an upload not yet
    attached), or None when no attachment names it (its post is gone: it must not be
    served). Names are `<token>.<ext>` and `<token>-small.<ext>`: the picture's row is found
    by its token with each extension, on the unique index."""
    stem = name.rpartition(".")[0].removesuffix("-small")
    rows = await conn.execute(
        select(
            media_attachments.c.file_name, media_attachments.c.preview_name, statuses.c.visibility
        )
        .outerjoin(statuses, statuses.c.id == media_attachments.c.status_id)
        .where(media_attachments.c.file_name.in_([f"{stem}.{ext}" for ext in CONTENT_TYPES]))
    )
    for row in rows:
        if name in (row.file_name, row.preview_name):
            return row.visibility or ""
    # A profile picture is public while its account shows it.
    avatar = await conn.scalar(
        select(accounts.c.id).where(
            accounts.c.avatar_file == name,
            accounts.c.deleted_at.is_(None),
            accounts.c.suspended_at.is_(None),
        )
    )
    return "public" if avatar is not None else None


async def prune_orphan_files(db: Database, data_dir: Path, before: datetime) -> int:
    """Delete the stored files written before `before` that no attachment or profile names
    any more (those of deleted posts and accounts, however they went, replaced profile
    pictures, and copies never recorded); how many. Newer ones may belong to a row not
    committed yet."""
    found = await asyncio.to_thread(_files_written_before, data_dir, before.timestamp())
    if not found:
        return 0
    async with db.read() as conn:
        rows = await conn.execute(
            select(media_attachments.c.file_name, media_attachments.c.preview_name).where(
                media_attachments.c.file_name.is_not(None)
            )
        )
        named = {name for row in rows for name in row if name}
        pictures = await conn.execute(
            select(accounts.c.avatar_file).where(accounts.c.avatar_file.is_not(None))
        )
        named |= {row.avatar_file for row in pictures}
    orphans = [name for name in found if name not in named]
    await asyncio.to_thread(remove_files, data_dir, *orphans)
    return len(orphans)


def _files_written_before(data_dir: Path, before: float) -> list[str]:
    folder = media_dir(data_dir)
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return [
            entry.name
            for entry in entries
            if is_file_name(entry.name) and entry.stat().st_mtime < before
        ]


async def prune_unattached(
    db: Database, data_dir: Path, before: datetime, batches: int | None = None
) -> int:
    """Delete uploads made before `before` and never attached, rows then files, in batches
    (at most `batches` of them, if given); how many were deleted."""
    pruned = 0
    while batches is None or batches > 0:
        batches = None if batches is None else batches - 1
        async with db.transaction() as conn:
            stale = select(media_attachments.c.id).where(
                media_attachments.c.status_id.is_(None),
                media_attachments.c.file_name.is_not(None),
                media_attachments.c.created_at < before,
            )
            ids = [row.id for row in await conn.execute(stale.limit(_PRUNE_BATCH))]
            # `status_id IS NULL` again: an upload attached meanwhile is kept.
            gone = await conn.execute(
                delete(media_attachments)
                .where(media_attachments.c.id.in_(ids), media_attachments.c.status_id.is_(None))
                .returning(media_attachments.c.file_name, media_attachments.c.preview_name)
            )
            names = [name for row in gone for name in row if name]
        await asyncio.to_thread(remove_files, data_dir, *names)
        pruned += len(ids)
        if len(ids) < _PRUNE_BATCH:
            break
    return pruned
