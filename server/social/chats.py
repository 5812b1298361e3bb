"""Chats: direct-message threads with members, a name, an owner and read markers.

Every direct message this node stores belongs to the chat of its FEP-7888 context, which is
made when the first message of a thread arrives; whoever writes or is named in a message
becomes a member, unless they left. Groups made here get a context of this node's and an
owner (their creator): the owner adds and removes people and renames the group, anyone may
leave. Those changes reach the other members' nodes as the activities protocol/chats.py
describes; other servers only ever see direct messages. Who reads what is the member's own
marker; it reaches others only when the reader shares read receipts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from federation.dispatch import PRIORITY_DIRECT, Outbound
from protocol.activities import render_activity
from protocol.addressing import DIRECT, Audience
from protocol.chats import CHAT_CONTEXT, CHAT_MEMBERS_MAX, CHAT_NAME_MAX, ChatDocument
from protocol.chats import render_chat as render_chat_document
from server.identity.accounts import Account, account_from_row, select_accounts
from server.social.events import emit
from server.social.statuses import Status, mentioned_accounts, status_from_row
from server.social.timelines import PageRequest, newest_first, not_silenced_for, paged
from server.social.visibility import is_blocked_between
from server.storage.ids import first_id_after, new_id
from server.storage.tables import (
    accounts,
    chat_members,
    chat_payments,
    chats,
    conversations,
    mentions,
    statuses,
)
from server.urls import Urls

CHAT_EVENT = "kith:chat"


class ChatError(ValueError):
    """A chat action that cannot be done as asked; `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Chat:
    id: int
    context_uri: str
    owner_account_id: int | None
    name: str | None
    is_group: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Member:
    account: Account
    joined_at: datetime
    left_at: datetime | None
    read_up_to_id: int | None

    @property
    def active(self) -> bool:
        return self.left_at is None


def chat_from_row(row: Any) -> Chat:
    return Chat(
        row.id,
        row.context_uri,
        row.owner_account_id,
        row.name,
        row.is_group,
        row.created_at,
        row.updated_at,
    )


async def chat_by_id(conn: AsyncConnection, chat_id: int) -> Chat | None:
    row = (await conn.execute(select(chats).where(chats.c.id == chat_id))).first()
    return chat_from_row(row) if row is not None else None


async def chat_by_context(conn: AsyncConnection, context_uri: str) -> Chat | None:
    row = (await conn.execute(select(chats).where(chats.c.context_uri == context_uri))).first()
    return chat_from_row(row) if row is not None else None


async def members_of(conn: AsyncConnection, chat_id: int) -> list[Member]:
    """Everyone who is or was in the chat, in the order they joined."""
    return (await members_of_chats(conn, [chat_id])).get(chat_id, [])


async def members_of_chats(conn: AsyncConnection, chat_ids: list[int]) -> dict[int, list[Member]]:
    """`members_of` for several chats, in one query (a page of chats)."""
    rows = await conn.execute(
        select_accounts()
        .add_columns(
            chat_members.c.chat_id,
            chat_members.c.joined_at,
            chat_members.c.left_at,
            chat_members.c.read_up_to_id,
        )
        .join(chat_members, chat_members.c.account_id == accounts.c.id)
        .where(chat_members.c.chat_id.in_(chat_ids))
        .order_by(chat_members.c.joined_at, accounts.c.id)
    )
    found: dict[int, list[Member]] = {chat_id: [] for chat_id in chat_ids}
    for row in rows:
        member = Member(account_from_row(row), row.joined_at, row.left_at, row.read_up_to_id)
        found[row.chat_id].append(member)
    return found


def _member(members: list[Member], account_id: int | None) -> Member | None:
    return next((m for m in members if m.account.id == account_id), None)


async def chat_of_member(conn: AsyncConnection, viewer: Account, chat_id: int) -> Chat:
    """A chat the viewer is or was in; 404 otherwise (others do not learn it exists)."""
    chat = await chat_by_id(conn, chat_id)
    found = chat is not None and await conn.scalar(
        select(chat_members.c.chat_id).where(
            chat_members.c.chat_id == chat_id, chat_members.c.account_id == viewer.id
        )
    )
    if chat is None or not found:
        raise ChatError("Record not found", 404)
    return chat


async def chats_of(
    conn: AsyncConnection, viewer: Account, page: PageRequest
) -> list[tuple[Chat, int]]:
    """A page of the viewer's chats, the one with the newest message first, each with its
    paging key: its newest message's id (or, with none yet, its own: both time-sorted)."""
    last_message = (
        select(func.max(conversations.c.last_status_id))
        .where(
            conversations.c.account_id == viewer.id,
            conversations.c.context_uri == chats.c.context_uri,
        )
        .scalar_subquery()
    )
    recency = func.coalesce(last_message, chats.c.id)
    query = (
        select(chats, recency.label("recency"))
        .join(chat_members, chat_members.c.chat_id == chats.c.id)
        .where(chat_members.c.account_id == viewer.id)
    )
    rows = newest_first((await conn.execute(paged(query, recency, page))).all(), page)
    return [(chat_from_row(row), row.recency) for row in rows]


# --- messages ------------------------------------------------------------------------------


def in_chat(context_uri: str) -> Any:
    """The statuses of a thread: its context, or the root itself (a remote root without one)."""
    return and_(
        or_(statuses.c.context_uri == context_uri, statuses.c.uri == context_uri),
        statuses.c.visibility == DIRECT,
    )


def messages_for(viewer: Account, chat: Chat, left_at: datetime | None) -> Select:
    """The chat's messages the viewer may read: its own and those addressed to it, from
    people it has not blocked or muted, and none after it left."""
    query = select(statuses).where(
        in_chat(chat.context_uri),
        or_(
            statuses.c.account_id == viewer.id,
            statuses.c.id.in_(
                select(mentions.c.status_id).where(mentions.c.account_id == viewer.id)
            ),
        ),
        *not_silenced_for(viewer),
    )
    if left_at is not None:
        query = query.where(statuses.c.id < first_id_after(left_at))
    return query


async def latest_message(
    conn: AsyncConnection, viewer: Account, chat: Chat, left_at: datetime | None
) -> Status | None:
    query = messages_for(viewer, chat, left_at).order_by(statuses.c.id.desc()).limit(1)
    row = (await conn.execute(query)).first()
    return status_from_row(row) if row is not None else None


async def message_by_uri(conn: AsyncConnection, chat: Chat, uri: str | None) -> Status | None:
    row = (
        await conn.execute(select(statuses).where(in_chat(chat.context_uri), statuses.c.uri == uri))
    ).first()
    return status_from_row(row) if row is not None else None


async def link_payment(conn: AsyncConnection, status_id: int, payment_uri: str) -> None:
    """This message is about that payment request or transfer."""
    await insert_ignoring_duplicates(
        conn, chat_payments, {"status_id": status_id, "payment_uri": payment_uri}, ["status_id"]
    )


async def has_message_about(conn: AsyncConnection, payment_uri: str) -> bool:
    """Whether a chat message here already names this payment (a retried send adds none)."""
    found = await conn.scalar(
        select(chat_payments.c.status_id).where(chat_payments.c.payment_uri == payment_uri)
    )
    return found is not None


async def payments_named(conn: AsyncConnection, status_ids: list[int]) -> dict[int, str]:
    """The payment each of these messages is about, if any."""
    if not status_ids:
        return {}
    rows = await conn.execute(
        select(chat_payments.c.status_id, chat_payments.c.payment_uri).where(
            chat_payments.c.status_id.in_(status_ids)
        )
    )
    return {row.status_id: row.payment_uri for row in rows}


async def is_message_of(conn: AsyncConnection, viewer: Account, chat: Chat, status: Status) -> bool:
    query = messages_for(viewer, chat, None).where(statuses.c.id == status.id)
    return (await conn.execute(query)).first() is not None


async def recipients_of_message(
    conn: AsyncConnection, sender: Account, chat: Chat
) -> list[Account]:
    """Who a member's new message goes to: everyone else still in the chat, but those who
    block the sender or whom it blocks."""
    members = await members_of(conn, chat.id)
    me = _member(members, sender.id)
    if me is None or not me.active:
        raise ChatError("you are no longer in this chat", 403)
    recipients = [
        m.account
        for m in members
        if m.active
        and m.account.id != sender.id
        and not await is_blocked_between(conn, sender.id, m.account.id)
    ]
    if not recipients:
        raise ChatError("no one else in this chat can receive your message")
    return recipients


async def unread_count(conn: AsyncConnection, viewer: Account, chat: Chat, member: Member) -> int:
    query = messages_for(viewer, chat, member.left_at).where(
        statuses.c.account_id != viewer.id, statuses.c.id > (member.read_up_to_id or 0)
    )
    return await conn.scalar(select(func.count()).select_from(query.subquery())) or 0


async def chat_for_message(
    conn: AsyncConnection, status: Status, author: Account, now: datetime
) -> tuple[Chat, list[Member], list[Account]]:
    """The chat a direct message belongs to (made when it is the first), its members, and the
    people the message names; they and the author join, except those who left."""
    context = status.context_uri or status.uri
    named = [author, *(a for a, _ in await mentioned_accounts(conn, status.id))]
    people = list({a.id: a for a in named}.values())
    inserted = await insert_ignoring_duplicates(
        conn,
        chats,
        {
            "id": new_id(now),
            "context_uri": context,
            "owner_account_id": author.id,
            "name": None,
            "is_group": len(people) > 2,
            "created_at": now,
            "updated_at": now,
        },
        ["context_uri"],
    )
    chat = await chat_by_context(conn, context)
    assert chat is not None
    for person in people:
        await insert_ignoring_duplicates(
            conn,
            chat_members,
            {"chat_id": chat.id, "account_id": person.id, "joined_at": now},
            ["chat_id", "account_id"],
        )
    members = await members_of(conn, chat.id)
    changes: dict[str, Any] = {"updated_at": now}
    if not inserted and not chat.is_group and sum(m.active for m in members) > 2:
        changes["is_group"] = True  # someone named a third person: it is a group now
    await conn.execute(update(chats).where(chats.c.id == chat.id).values(**changes))
    return chat, members, people


async def record_direct_message(
    conn: AsyncConnection, status: Status, author: Account, silenced: set[int], now: datetime
) -> None:
    """A new direct message: its chat moves on, and each local member it is addressed to sees
    it (Mastodon's `conversations`, unread for all but its author) unless they left the chat
    or block or mute the author."""
    chat, members, people = await chat_for_message(conn, status, author, now)
    addressed = {p.id for p in people}
    readers = [
        m.account
        for m in members
        if m.account.is_local
        and m.account.id in addressed
        and (m.account.id == author.id or (m.active and m.account.id not in silenced))
    ]
    for reader in readers:
        await _move_conversation(
            conn, reader.id, chat.context_uri, status, reader.id != author.id, now
        )
    if author.is_local:
        await set_read(conn, chat, author.id, status.id)  # one has read what one wrote
    hear_of(conn, chat, [r.id for r in readers])


async def chat_changed(conn: AsyncConnection, status: Status) -> list[int]:
    """A message was edited or is being deleted: its chat's local members it was addressed to
    hear of the chat again (`kith:chat`); returns who they are."""
    chat = await chat_by_context(conn, status.context_uri or status.uri)
    if chat is None:
        return []
    named = {status.account_id, *(a.id for a, _ in await mentioned_accounts(conn, status.id))}
    local = [
        m.account.id
        for m in await members_of(conn, chat.id)
        if m.account.is_local and m.account.id in named
    ]
    hear_of(conn, chat, local)
    return local


async def _move_conversation(
    conn: AsyncConnection,
    account_id: int,
    context: str,
    status: Status,
    unread: bool,
    now: datetime,
) -> None:
    values = {
        "id": new_id(now),
        "account_id": account_id,
        "context_uri": context,
        "last_status_id": status.id,
        "unread": unread,
        "updated_at": now,
    }
    mine = and_(conversations.c.account_id == account_id, conversations.c.context_uri == context)
    if not await insert_ignoring_duplicates(
        conn, conversations, values, ["account_id", "context_uri"]
    ):
        await conn.execute(
            update(conversations)
            .where(mine)
            .values(last_status_id=status.id, unread=unread, updated_at=now)
        )
    row_id = await conn.scalar(select(conversations.c.id).where(mine))
    emit(conn, [f"direct:{account_id}"], "conversation", row_id)


def hear_of(conn: AsyncConnection, chat: Chat, local_ids: list[int]) -> None:
    """Tell these local members' clients the chat changed (a `kith:chat` event)."""
    emit(conn, [f"direct:{i}" for i in sorted(set(local_ids))], CHAT_EVENT, chat.id)


def _local_members(members: list[Member], active_only: bool = True) -> list[int]:
    return [m.account.id for m in members if m.account.is_local and (m.active or not active_only)]


# --- what members do -------------------------------------------------------------------------


async def create_chat(
    conn: AsyncConnection,
    urls: Urls,
    owner: Account,
    others: list[Account],
    name: str | None,
    now: datetime,
) -> tuple[Chat, list[Outbound]]:
    """A chat with these people. One person and no name: the existing one-to-one chat with
    them when there is one, as in WeChat."""
    others = list({a.id: a for a in others if a.id != owner.id}.values())
    if not others:
        raise ChatError("a chat needs at least one other person")
    if len(others) + 1 > CHAT_MEMBERS_MAX:
        raise ChatError(f"a chat has at most {CHAT_MEMBERS_MAX} members")
    name = _checked_name(name)
    for other in others:
        await _check_reachable(conn, owner, other)
    if len(others) == 1 and name is None:
        existing = await one_to_one(conn, owner, others[0])
        if existing is not None:
            return existing, []
    chat_id = new_id(now)
    await conn.execute(
        chats.insert().values(
            id=chat_id,
            context_uri=urls.context(chat_id),
            owner_account_id=owner.id,
            name=name,
            is_group=len(others) > 1 or name is not None,
            created_at=now,
            updated_at=now,
        )
    )
    for person in [owner, *others]:
        await conn.execute(
            chat_members.insert().values(chat_id=chat_id, account_id=person.id, joined_at=now)
        )
    chat = await chat_by_id(conn, chat_id)
    assert chat is not None
    members = await members_of(conn, chat_id)
    hear_of(conn, chat, _local_members(members))
    if not chat.is_group:
        return chat, []  # a one-to-one chat reaches the other side with its first message
    return chat, [await _told(conn, urls, owner, chat, "Add", members, others)]


async def one_to_one(conn: AsyncConnection, a: Account, b: Account) -> Chat | None:
    """The unnamed chat of exactly these two people, both still in it."""
    mine = select(chat_members.c.chat_id).where(
        chat_members.c.account_id == a.id, chat_members.c.left_at.is_(None)
    )
    theirs = select(chat_members.c.chat_id).where(
        chat_members.c.account_id == b.id, chat_members.c.left_at.is_(None)
    )
    rows = await conn.execute(
        select(chats)
        .where(chats.c.id.in_(mine), chats.c.id.in_(theirs), chats.c.is_group.is_(False))
        .order_by(chats.c.updated_at.desc())
    )
    for row in rows:
        if len(await members_of(conn, row.id)) == 2:
            return chat_from_row(row)
    return None


async def add_members(
    conn: AsyncConnection,
    urls: Urls,
    actor: Account,
    chat: Chat,
    people: list[Account],
    now: datetime,
) -> list[Outbound]:
    """The owner brings people in; they see the messages sent from now on."""
    members = await _owned(conn, actor, chat, "add people")
    if not chat.is_group:
        raise ChatError("people can only be added to a group chat; start a group instead")
    present = {m.account.id for m in members if m.active}
    new = [p for p in {p.id: p for p in people}.values() if p.id not in present]
    if not new:
        raise ChatError("everyone named is already in this chat")
    if len(present) + len(new) > CHAT_MEMBERS_MAX:
        raise ChatError(f"a chat has at most {CHAT_MEMBERS_MAX} members")
    for person in new:
        await _check_reachable(conn, actor, person)
        await join(conn, chat, person, now)
    members = await _touched(conn, chat, now)
    hear_of(conn, chat, _local_members(members))
    return [await _told(conn, urls, actor, chat, "Add", members, new)]


async def remove_member(
    conn: AsyncConnection, urls: Urls, actor: Account, chat: Chat, person: Account, now: datetime
) -> list[Outbound]:
    """The owner takes someone out; they keep what they saw before."""
    members = await _owned(conn, actor, chat, "remove people")
    gone = _member(members, person.id)
    if person.id == actor.id:
        raise ChatError("leave the chat instead of removing yourself")
    if gone is None or not gone.active:
        raise ChatError("that person is not in this chat")
    await part(conn, chat, person, now)
    members = await _touched(conn, chat, now)
    hear_of(conn, chat, [*_local_members(members), *([person.id] if person.is_local else [])])
    return [await _told(conn, urls, actor, chat, "Remove", members, [person], also=[person])]


async def leave_chat(
    conn: AsyncConnection, urls: Urls, actor: Account, chat: Chat, now: datetime
) -> list[Outbound]:
    """The member leaves; an owner who leaves hands the group to the longest-standing member."""
    members = await members_of(conn, chat.id)
    me = _member(members, actor.id)
    if me is None or not me.active:
        raise ChatError("you are not in this chat")
    await part(conn, chat, actor, now)
    staying = [m for m in members if m.active and m.account.id != actor.id]
    if chat.owner_account_id == actor.id and staying:
        heir = staying[0].account.id
        await conn.execute(update(chats).where(chats.c.id == chat.id).values(owner_account_id=heir))
        chat = await chat_by_id(conn, chat.id) or chat
    members = await _touched(conn, chat, now)
    hear_of(conn, chat, [*_local_members(members), actor.id])
    if not chat.is_group:
        return []
    return [await _told(conn, urls, actor, chat, "Leave", members, None, also=[actor])]


async def rename_chat(
    conn: AsyncConnection, urls: Urls, actor: Account, chat: Chat, name: str | None, now: datetime
) -> list[Outbound]:
    await _owned(conn, actor, chat, "rename it")
    name = _checked_name(name)
    await conn.execute(update(chats).where(chats.c.id == chat.id).values(name=name, is_group=True))
    chat = await chat_by_id(conn, chat.id) or chat
    members = await _touched(conn, chat, now)
    hear_of(conn, chat, _local_members(members))
    return [await _told(conn, urls, actor, chat, "Update", members, None)]


async def mark_read(
    conn: AsyncConnection, urls: Urls, reader: Account, chat: Chat, up_to: int | None, now: datetime
) -> list[Outbound]:
    """Move the reader's marker to a message (the newest when `up_to` is None); never back.
    Its read receipt goes to the other members' nodes only if the reader shares them."""
    members = await members_of(conn, chat.id)
    me = _member(members, reader.id)
    assert me is not None
    query = messages_for(reader, chat, me.left_at)
    if up_to is not None:
        query = query.where(statuses.c.id == up_to)
    row = (await conn.execute(query.order_by(statuses.c.id.desc()).limit(1))).first()
    if row is None:
        if up_to is not None:
            raise ChatError("that message is not in this chat")
        return []
    if me.read_up_to_id is not None and row.id <= me.read_up_to_id:
        return []
    await set_read(conn, chat, reader.id, row.id)
    latest = await latest_message(conn, reader, chat, me.left_at)
    if latest is not None and latest.id <= row.id:
        await conn.execute(
            update(conversations)
            .where(
                conversations.c.account_id == reader.id,
                conversations.c.context_uri == chat.context_uri,
            )
            .values(unread=False)
        )
    hear_of(conn, chat, _local_members(members))
    if not await shares_read_receipts(conn, reader.id):
        return []
    remote = tuple(urls.actor(m.account) for m in members if m.active and not m.account.is_local)
    if not remote:
        return []
    activity = render_activity(
        "Read",
        urls.activity(new_id(now)),
        urls.actor(reader),
        row.uri,
        audience=Audience(to=remote, cc=()),
        published=now,
        context=chat.context_uri,
    )
    return [Outbound(activity, urls.actor(reader), remote, PRIORITY_DIRECT)]


async def set_read(conn: AsyncConnection, chat: Chat, account_id: int, status_id: int) -> None:
    await conn.execute(
        update(chat_members)
        .where(
            chat_members.c.chat_id == chat.id,
            chat_members.c.account_id == account_id,
            or_(
                chat_members.c.read_up_to_id.is_(None),
                chat_members.c.read_up_to_id < status_id,
            ),
        )
        .values(read_up_to_id=status_id)
    )


async def shares_read_receipts(conn: AsyncConnection, account_id: int) -> bool:
    return account_id in await sharing_read_receipts(conn, [account_id])


async def sharing_read_receipts(conn: AsyncConnection, account_ids: Iterable[int]) -> set[int]:
    """Those of these accounts that share their read receipts."""
    rows = await conn.execute(
        select(accounts.c.id).where(
            accounts.c.id.in_(list(account_ids)), accounts.c.shares_read_receipts.is_(True)
        )
    )
    return set(rows.scalars())


async def share_read_receipts(conn: AsyncConnection, account_id: int, share: bool) -> None:
    await conn.execute(
        update(accounts).where(accounts.c.id == account_id).values(shares_read_receipts=share)
    )


# --- the rules -----------------------------------------------------------------------------


def _checked_name(name: str | None) -> str | None:
    name = (name or "").strip() or None
    if name is not None and len(name) > CHAT_NAME_MAX:
        raise ChatError(f"a chat's name has at most {CHAT_NAME_MAX} characters")
    return name


async def _check_reachable(conn: AsyncConnection, actor: Account, other: Account) -> None:
    if other.deleted_at is not None or other.suspended_at is not None:
        raise ChatError(f"{other.username} cannot be added to a chat")
    if other.is_instance_actor:
        raise ChatError("a server cannot be in a chat")
    if await is_blocked_between(conn, actor.id, other.id):
        raise ChatError(f"you cannot chat with {other.username}")


async def _owned(conn: AsyncConnection, actor: Account, chat: Chat, what: str) -> list[Member]:
    members = await members_of(conn, chat.id)
    me = _member(members, actor.id)
    if me is None or not me.active:
        raise ChatError("you are not in this chat", 403)
    if chat.owner_account_id != actor.id:
        raise ChatError(f"only the chat's owner can {what}", 403)
    return members


async def join(conn: AsyncConnection, chat: Chat, person: Account, now: datetime) -> None:
    if not await insert_ignoring_duplicates(
        conn,
        chat_members,
        {"chat_id": chat.id, "account_id": person.id, "joined_at": now},
        ["chat_id", "account_id"],
    ):
        await conn.execute(
            update(chat_members)
            .where(chat_members.c.chat_id == chat.id, chat_members.c.account_id == person.id)
            .values(left_at=None, joined_at=now)
        )


async def part(conn: AsyncConnection, chat: Chat, person: Account, now: datetime) -> None:
    await conn.execute(
        update(chat_members)
        .where(chat_members.c.chat_id == chat.id, chat_members.c.account_id == person.id)
        .values(left_at=now)
    )


async def _touched(conn: AsyncConnection, chat: Chat, now: datetime) -> list[Member]:
    await conn.execute(update(chats).where(chats.c.id == chat.id).values(updated_at=now))
    return await members_of(conn, chat.id)


# --- what other nodes hear -------------------------------------------------------------------


def chat_document(urls: Urls, chat: Chat, members: list[Member]) -> ChatDocument:
    owner = _member(members, chat.owner_account_id)
    return ChatDocument(
        id=chat.context_uri,
        owner=urls.actor(owner.account) if owner is not None else "",
        members=tuple(urls.actor(m.account) for m in members if m.active),
        name=chat.name,
    )


async def _told(
    conn: AsyncConnection,
    urls: Urls,
    actor: Account,
    chat: Chat,
    kind: str,
    members: list[Member],
    objects: list[Account] | None,
    also: list[Account] | None = None,
) -> Outbound:
    """The change as an activity carrying the chat as it now stands, to every remote member."""
    document = render_chat_document(chat_document(urls, chat, members))
    remote = [m.account for m in members if m.active and not m.account.is_local]
    remote += [a for a in also or [] if not a.is_local]
    recipients = tuple(dict.fromkeys(urls.actor(a) for a in remote))
    extra: dict[str, Any] = {"context": chat.context_uri}
    if kind in ("Add", "Remove"):
        obj: Any = [urls.actor(a) for a in objects or []]
        extra["target"] = document
    else:
        obj = document
    activity = render_activity(
        kind,
        urls.activity(new_id(chat.updated_at)),
        urls.actor(actor),
        obj,
        audience=Audience(to=recipients, cc=()),
        **extra,
    )
    activity["@context"] = CHAT_CONTEXT
    return Outbound(activity, urls.actor(actor), recipients, PRIORITY_DIRECT)
