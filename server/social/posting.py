"""What local users do with posts: publish, edit, delete. Each returns what to deliver."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import inboxes_for
from federation.dispatch import PRIORITY_BULK, PRIORITY_DIRECT, Outbound
from protocol.activities import render_activity, render_note
from protocol.addressing import DIRECT, VISIBILITIES
from server.identity.accounts import Account
from server.social import chats, media
from server.social.chats import Chat, link_payment
from server.social.distribution import announce_edit, announce_removal, distribute
from server.social.statuses import (
    NewStatus,
    Status,
    audience_of,
    insert_status,
    mentioned_accounts,
    note_document,
    remote_follower_uris,
    remove_status,
    update_status_content,
)
from server.social.text import MentionKey, find_hashtags, render_post
from server.social.visibility import can_see
from server.storage.ids import new_id
from server.storage.tables import idempotency_keys
from server.urls import Urls

TEXT_LENGTH_MAX = 5000


class InvalidPost(ValueError):
    """A post that cannot be published as asked; the message says why."""


async def publish_status(
    conn: AsyncConnection,
    urls: Urls,
    author: Account,
    text: str,
    now: datetime,
    visibility: str = "public",
    mentions: list[Account] | None = None,
    in_reply_to: Status | None = None,
    spoiler_text: str = "",
    sensitive: bool = False,
    language: str | None = None,
    media_ids: list[int] | None = None,
    context_uri: str | None = None,
    payment_uri: str | None = None,
) -> tuple[Status, list[Outbound]]:
    """Store a local post and return its Create for every remote inbox it must reach.

    `mentions` are the accounts the text's handles resolved to (the caller resolves them,
    fetching remote ones, before this transaction). `media_ids` are the author's own
    unattached uploads; with them the text may be empty, as on Mastodon. `context_uri` puts
    the post in a chat's thread (server/social/chats.py) rather than its parent's or its own;
    `payment_uri` makes it a chat's message about that payment request or transfer.
    """
    if visibility not in VISIBILITIES:
        raise InvalidPost(f"visibility must be one of {', '.join(VISIBILITIES)}")
    if (not text.strip() and not media_ids) or len(text) > TEXT_LENGTH_MAX:
        raise InvalidPost(f"a post has 1 to {TEXT_LENGTH_MAX} characters or an attachment")
    if in_reply_to is not None and not await can_see(conn, author, in_reply_to):
        raise InvalidPost("the status replied to is not visible to you")
    mentioned = list({a.id: a for a in mentions or []}.values())
    status_id = new_id(now)
    new = NewStatus(
        uri=urls.status(status_id),
        url=urls.status_page(author, status_id),
        account_id=author.id,
        text=text,
        content=render_post(text, _profiles(mentioned, urls), urls.tag),
        visibility=visibility,
        created_at=now,
        spoiler_text=spoiler_text,
        sensitive=sensitive or bool(spoiler_text),
        in_reply_to_id=in_reply_to.id if in_reply_to else None,
        in_reply_to_uri=in_reply_to.uri if in_reply_to else None,
        context_uri=context_uri or _thread_context(urls, status_id, in_reply_to),
        language=language,
    )
    status = await insert_status(
        conn, status_id, new, {a.id: False for a in mentioned}, find_hashtags(text)
    )
    assert status is not None
    if media_ids:
        await media.attach(conn, author.id, status.id, media_ids)
    if payment_uri is not None:
        await link_payment(conn, status.id, payment_uri)
    await distribute(conn, status, now)
    return status, [await _create_outbound(conn, urls, author, status, now)]


async def post_to_chat(
    conn: AsyncConnection,
    urls: Urls,
    sender: Account,
    chat: Chat,
    text: str,
    now: datetime,
    media_ids: list[int] | None = None,
    in_reply_to: Status | None = None,
    payment_uri: str | None = None,
) -> tuple[Status, list[Outbound]]:
    """A message to everyone else in the chat: a direct post naming each member, in the
    chat's context (server/social/chats.py)."""
    recipients = await chats.recipients_of_message(conn, sender, chat)
    if in_reply_to is not None and not await chats.is_message_of(conn, sender, chat, in_reply_to):
        raise chats.ChatError("the message replied to is not in this chat")
    return await publish_status(
        conn, urls, sender, text, now, DIRECT, recipients, in_reply_to,
        media_ids=media_ids, context_uri=chat.context_uri, payment_uri=payment_uri,
    )  # fmt: skip


def _profiles(mentioned: list[Account], urls: Urls) -> dict[MentionKey, str]:
    """Profile URLs by handle, so the post's @-mentions link where Mastodon links them."""
    profiles: dict[MentionKey, str] = {}
    for account in mentioned:
        name = account.username.lower()
        if account.is_local:
            profiles[(name, None)] = profiles[(name, urls.domain)] = urls.profile(account)
        else:
            profiles[(name, account.domain.lower())] = account.url or urls.actor(account)
    return profiles


def _thread_context(urls: Urls, status_id: int, parent: Status | None) -> str:
    if parent is None:
        return urls.context(status_id)
    return parent.context_uri or parent.uri


async def _recipients(conn: AsyncConnection, author: Account, status: Status) -> tuple[str, ...]:
    """Remote actors that must receive this status: followers (unless direct) and mentions."""
    mentioned = [a.uri for a, _ in await mentioned_accounts(conn, status.id) if a.uri]
    followers = [] if status.visibility == DIRECT else await remote_follower_uris(conn, author.id)
    return tuple(dict.fromkeys([*followers, *mentioned]))


def _priority(status: Status) -> int:
    return PRIORITY_DIRECT if status.visibility == DIRECT else PRIORITY_BULK


async def _create_outbound(
    conn: AsyncConnection, urls: Urls, author: Account, status: Status, now: datetime
) -> Outbound:
    note = await note_document(conn, status, urls)
    activity = render_activity(
        "Create",
        f"{status.uri}/activity",
        urls.actor(author),
        render_note(note),
        audience=note.audience,
        published=status.created_at,
    )
    return Outbound(
        activity=activity,
        signer_uri=urls.actor(author),
        recipients=await _recipients(conn, author, status),
        priority=_priority(status),
    )


async def edit_status(
    conn: AsyncConnection,
    urls: Urls,
    author: Account,
    status: Status,
    text: str,
    now: datetime,
    spoiler_text: str = "",
    sensitive: bool = False,
    media_ids: list[int] | None = None,
) -> list[Outbound]:
    """Change a local post's text (and its pictures, unless `media_ids` is None); peers get
    an Update with `updated` set."""
    if status.account_id != author.id:
        raise InvalidPost("only the author can edit a post")
    if media_ids is not None:
        await media.replace_attachments(conn, author.id, status.id, media_ids)
    has_media = await media.has_attachments(conn, status.id)
    if (not text.strip() and not has_media) or len(text) > TEXT_LENGTH_MAX:
        raise InvalidPost(f"a post has 1 to {TEXT_LENGTH_MAX} characters or an attachment")
    mentioned = [a for a, _ in await mentioned_accounts(conn, status.id)]
    content = render_post(text, _profiles(mentioned, urls), urls.tag)
    sensitive = sensitive or bool(spoiler_text)
    await update_status_content(conn, status, content, spoiler_text, sensitive, now, text=text)
    edited = replace(
        status,
        content=content,
        text=text,
        spoiler_text=spoiler_text,
        sensitive=sensitive,
        edited_at=now,
    )
    await announce_edit(conn, edited, now)
    note = await note_document(conn, edited, urls)
    activity = render_activity(
        "Update",
        urls.activity(new_id(now)),
        urls.actor(author),
        render_note(note),
        audience=note.audience,
        published=now,
    )
    recipients = await _recipients(conn, author, status)
    return [Outbound(activity, urls.actor(author), recipients, _priority(status))]


async def delete_status(
    conn: AsyncConnection, urls: Urls, author: Account, status: Status, now: datetime
) -> list[Outbound]:
    """Delete a local post; the Delete reaches everyone the post reached (same addressing)."""
    if status.account_id != author.id:
        raise InvalidPost("only the author can delete a post")
    audience = await audience_of(conn, status, author, urls)
    recipients = await _recipients(conn, author, status)
    await announce_removal(conn, status)
    await remove_status(conn, status, urls.actor(author), now)
    # Where the post went, even to an actor whose server has forgotten it since (410): the
    # server still holds the post.
    inboxes = tuple((await inboxes_for(conn, recipients, gone_too=True)).values())
    tombstone = {"id": status.uri, "type": "Tombstone"}
    activity = render_activity(
        "Delete", urls.activity(new_id(now)), urls.actor(author), tombstone, audience=audience
    )
    return [Outbound(activity, urls.actor(author), recipients, _priority(status), inboxes)]


async def status_for_idempotency_key(
    conn: AsyncConnection, account: Account, key: str
) -> int | None:
    """The status an earlier request with this `Idempotency-Key` created, if any."""
    row = await conn.execute(
        select(idempotency_keys.c.status_id).where(
            idempotency_keys.c.account_id == account.id, idempotency_keys.c.key == key
        )
    )
    return row.scalar_one_or_none()


async def remember_idempotency_key(
    conn: AsyncConnection, account: Account, key: str, status: Status, now: datetime
) -> None:
    await conn.execute(
        insert(idempotency_keys).values(
            account_id=account.id, key=key, status_id=status.id, created_at=now
        )
    )
