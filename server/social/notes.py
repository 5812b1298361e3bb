"""Remote posts: reading a peer's Note into a status, updating it, and remembering deletions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from federation.dispatch import Reject
from protocol.activities import payment_of
from protocol.addressing import LIMITED, PRIVATE, visibility_of
from protocol.as2 import as_list, host_of, id_of, ids_of, is_http_url, text_of, url_of
from protocol.errors import ProtocolError
from protocol.sanitize import sanitize_html
from server.identity.accounts import Account
from server.social.chats import link_payment
from server.social.distribution import announce_edit, distribute
from server.social.graph import block_between
from server.social.media import Copy, store_remote
from server.social.remote_accounts import account_for_actor
from server.social.statuses import (
    NewStatus,
    insert_status,
    is_tombstoned,
    status_by_uri,
    update_status_content,
)
from server.storage.ids import new_id
from server.storage.tables import accounts, follows, tombstones
from server.urls import Urls

NOTE_TYPES = frozenset({"Note", "Article", "Question", "Page"})
# Pleroma's one-to-one chat message (interop reference §6): stored as a direct message.
CHAT_MESSAGE = "ChatMessage"
_SUMMARY_MAX = 1000
_CONTENT_MAX = 100_000
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,2}")
_LANGUAGE_MAX = 16


class NoteStore:
    """Stores peers' posts with Mastodon's visibility rules and origin checks."""

    def __init__(self, urls: Urls) -> None:
        self.urls = urls

    def visibility(self, author: Account, document: dict[str, Any], mentioned: list[str]) -> str:
        """The visibility a post's addressing means (the activity's, if the object has none)."""
        to, cc = ids_of(document.get("to")), ids_of(document.get("cc"))
        return visibility_of(to, cc, author.followers_url, mentioned)

    async def store(
        self,
        conn: AsyncConnection,
        author: Account,
        note: dict[str, Any],
        now: datetime,
        activity: dict[str, Any] | None = None,
        copies: Mapping[str, Copy] | None = None,
    ) -> None:
        """Store a post once (`copies`: of its pictures, made beforehand). A known or deleted
        id changes nothing (CVE-2024-37903)."""
        note_id = _checked_note_id(note, author)
        if await is_tombstoned(conn, note_id) or await status_by_uri(conn, note_id):
            return
        addressing = note if ("to" in note or "cc" in note) else (activity or {})
        mention_hrefs = _mention_hrefs(note)
        visibility = self.visibility(author, addressing, mention_hrefs)
        mentioned = await self._local_recipients(conn, addressing, mention_hrefs)
        if visibility in (PRIVATE, LIMITED, "direct") and not await self._reaches_someone_here(
            conn, author, visibility, mentioned
        ):
            raise Reject("a non-public post addressed to nobody on this server")
        parent_uri = id_of(note.get("inReplyTo"))
        parent = await status_by_uri(conn, parent_uri) if is_http_url(parent_uri) else None
        summary = text_of(note.get("summary"), _SUMMARY_MAX)
        new = NewStatus(
            uri=note_id,
            url=_note_url(note, note_id),
            account_id=author.id,
            content=_content(note),
            visibility=visibility,
            created_at=_published(note, now),
            spoiler_text=summary,
            sensitive=note.get("sensitive") is True or bool(summary),
            in_reply_to_id=parent.id if parent else None,
            in_reply_to_uri=parent_uri if is_http_url(parent_uri) else None,
            context_uri=_context(note, parent),
            language=_language(note),
        )
        status = await insert_status(conn, new_id(now), new, mentioned, _hashtags(note))
        if status is not None:
            if note.get("attachment"):
                await store_remote(conn, author.id, status.id, note["attachment"], now, copies)
            if visibility == "direct" and (payment := payment_of(note)) is not None:
                await link_payment(conn, status.id, payment)
            await distribute(conn, status, now)

    async def store_chat_message(
        self,
        conn: AsyncConnection,
        author: Account,
        message: dict[str, Any],
        now: datetime,
        copies: Mapping[str, Copy] | None = None,
    ) -> None:
        """Store a Pleroma ChatMessage as what it is to Mastodon clients: a direct message
        from its author to its one local recipient, in their one-to-one thread. Refused (and
        nothing stored) unless it is new, for exactly one local actor who does not block the
        author, with content or one attachment (Pleroma's own rules)."""
        message_id = _checked_note_id(message, author, frozenset({CHAT_MESSAGE}))
        recipient = await self._chat_recipient(conn, message)
        if await block_between(conn, recipient.id, author.id) is not None:
            raise Reject("the recipient blocks the sender")
        if await is_tombstoned(conn, message_id) or await status_by_uri(conn, message_id):
            raise Reject("the chat message already exists")
        attachments = as_list(message.get("attachment"))
        if len(attachments) > 1:
            raise Reject("a chat message has at most one attachment")
        if not _has_text(message) and not attachments:
            raise Reject("a chat message has content or an attachment")
        recipient_uri = self.urls.actor(recipient)
        handle = f"@{recipient.username}@{self.urls.domain}"
        note = {
            **message,
            "type": "Note",
            "to": [recipient_uri],
            "cc": [],
            "tag": [{"type": "Mention", "href": recipient_uri, "name": handle}],
            "inReplyTo": None,
            "context": self.urls.chat_context(recipient, author),
        }
        await self.store(conn, author, note, now, copies=copies)

    async def _chat_recipient(self, conn: AsyncConnection, message: dict[str, Any]) -> Account:
        to, cc = ids_of(message.get("to")), ids_of(message.get("cc"))
        if len(to) != 1 or cc:
            raise Reject("a chat message is addressed to exactly one actor")
        recipient = await account_for_actor(conn, to[0], self.urls.base_url)
        if (
            recipient is None
            or not recipient.is_local
            or recipient.is_deleted
            or recipient.is_suspended
            or recipient.is_instance_actor
        ):
            raise Reject("a chat message must be addressed to an account on this server")
        return recipient

    async def _local_recipients(
        self, conn: AsyncConnection, addressing: dict[str, Any], mention_hrefs: list[str]
    ) -> dict[int, bool]:
        """Accounts here that the post tags or addresses (silent when addressed only)."""
        addressed = ids_of(addressing.get("to")) + ids_of(addressing.get("cc"))
        found: dict[int, bool] = {}
        for href in dict.fromkeys(mention_hrefs + addressed):
            account = await account_for_actor(conn, href, self.urls.base_url)
            if account is not None and not account.is_deleted:
                found[account.id] = found.get(account.id, True) and href not in mention_hrefs
        return found

    async def _reaches_someone_here(
        self, conn: AsyncConnection, author: Account, visibility: str, mentioned: dict[int, bool]
    ) -> bool:
        if mentioned:
            return True
        if visibility != PRIVATE:
            return False
        local_follower = await conn.execute(
            select(follows.c.id)
            .join(accounts, accounts.c.id == follows.c.account_id)
            .where(
                follows.c.target_account_id == author.id,
                follows.c.state == "accepted",
                accounts.c.domain == "",
            )
            .limit(1)
        )
        return local_follower.first() is not None

    async def update(
        self,
        conn: AsyncConnection,
        author: Account,
        note: dict[str, Any],
        now: datetime,
        copies: Mapping[str, Copy] | None = None,
    ) -> None:
        """Apply an edit to a post the author owns; Mastodon requires `updated`."""
        note_id = _checked_note_id(note, author)
        status = await status_by_uri(conn, note_id)
        if status is None:
            raise Reject("the Update names no post known here")
        if status.account_id != author.id:
            raise Reject("an actor can only update its own posts")
        if not note.get("updated"):
            raise Reject("a Note update must say when it was updated")
        summary = text_of(note.get("summary"), _SUMMARY_MAX)
        sensitive = note.get("sensitive") is True or bool(summary)
        edited_at = _parse_time(note.get("updated")) or now
        await update_status_content(conn, status, _content(note), summary, sensitive, edited_at)
        await store_remote(conn, author.id, status.id, note.get("attachment"), now, copies)
        edited = await status_by_uri(conn, note_id)
        if edited is not None:
            await announce_edit(conn, edited, now)

    async def tombstone(
        self, conn: AsyncConnection, uri: str, actor_uri: str, now: datetime
    ) -> None:
        """Remember a deletion that arrived before (or without) the post."""
        await insert_ignoring_duplicates(
            conn,
            tombstones,
            {"uri": uri, "account_uri": actor_uri, "deleted_at": now},
            keys=["uri"],
        )


def _checked_note_id(
    note: dict[str, Any], author: Account, types: frozenset[str] = NOTE_TYPES
) -> str:
    if note.get("type") not in types:
        raise Reject(f"objects of type {note.get('type')!r} are not posts")
    note_id = note.get("id")
    if not is_http_url(note_id) or host_of(note_id) != author.domain:
        raise Reject("the post's id is not on its author's server")
    if id_of(note.get("attributedTo")) != author.uri:
        raise Reject("the post is attributed to someone else")
    return note_id  # type: ignore[return-value]


def _mention_hrefs(note: dict[str, Any]) -> list[str]:
    return [
        tag["href"]
        for tag in as_list(note.get("tag"))
        if isinstance(tag, dict) and tag.get("type") == "Mention" and is_http_url(tag.get("href"))
    ]


def _hashtags(note: dict[str, Any]) -> list[str]:
    names = []
    for tag in as_list(note.get("tag")):
        if isinstance(tag, dict) and tag.get("type") == "Hashtag":
            name = text_of(tag.get("name"), 101).lstrip("#").lower()
            if name:
                names.append(name)
    return names


def _content(note: dict[str, Any]) -> str:
    content = note.get("content")
    if not isinstance(content, str):
        content_map = note.get("contentMap")
        values = list(content_map.values()) if isinstance(content_map, dict) else []
        content = next((v for v in values if isinstance(v, str)), "")
    try:
        return sanitize_html(content[:_CONTENT_MAX])
    except ProtocolError as exc:
        raise Reject(f"the post's content cannot be read: {exc}") from None


def _has_text(note: dict[str, Any]) -> bool:
    """Whether the post says anything once sanitised (tags and blanks are not words)."""
    return bool(re.sub(r"<[^>]*>", "", _content(note)).strip())


def _language(note: dict[str, Any]) -> str | None:
    """The language tag of the `contentMap` entry that is the content (GoToSocial's rule), else
    of its first entry (Mastodon's); None when there is no map or the tag is not BCP 47-like."""
    content_map = note.get("contentMap")
    if not isinstance(content_map, dict):
        return None
    content = note.get("content")
    matching = [tag for tag, text in content_map.items() if text == content]
    tag = next(iter(matching or content_map), None)
    if isinstance(tag, str) and len(tag) <= _LANGUAGE_MAX and _LANGUAGE.fullmatch(tag):
        return tag
    return None


def _note_url(note: dict[str, Any], note_id: str) -> str:
    url = url_of(note.get("url"))
    return url if url and host_of(url) == host_of(note_id) else note_id


def _context(note: dict[str, Any], parent: Any) -> str | None:
    for key in ("context", "conversation"):
        value = id_of(note.get(key))
        if isinstance(value, str) and len(value) <= 2048:
            return value
    return parent.context_uri if parent is not None else None


def _published(note: dict[str, Any], now: datetime) -> datetime:
    published = _parse_time(note.get("published"))
    # A post from the future is dated now: it must not float on top of timelines.
    return min(published, now) if published else now


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
