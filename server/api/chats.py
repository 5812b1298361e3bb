"""The Kith chats API (`/api/kith/v1/chats`): one-to-one and group chats across servers.

A chat's messages are direct statuses (the same entities as Mastodon's API), so an app shows
them with the code it already has; what this API adds is the chat itself: its members, name,
owner, unread count and read markers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter, mastodon_time
from server.api.pagination import page_request, paginated
from server.api.params import boolean, integer, path_id, request_params, string, string_list
from server.api.payments import chat_payment_entity
from server.api.responses import json_body
from server.appkeys import CLOCK, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, get_account
from server.social import chats, posting
from server.social.chats import Chat, ChatError, Member
from server.social.media import InvalidMedia, checked_media_ids
from server.social.posting import TEXT_LENGTH_MAX, InvalidPost
from server.social.statuses import status_by_id, status_from_row
from server.social.timelines import newest_first, paged
from server.storage.tables import statuses as statuses_table

routes = web.RouteTableDef()
PREFIX = "/api/kith/v1/chats"
PEOPLE_PER_REQUEST_MAX = 20


# --- rendering ------------------------------------------------------------------------------


async def render_chat(presenter: Presenter, chat: Chat) -> dict[str, Any]:
    """A chat as its member `presenter.viewer` sees it."""
    return (await render_chats(presenter, [chat]))[0]


async def render_chats(presenter: Presenter, found: list[Chat]) -> list[dict[str, Any]]:
    """Chats as their member `presenter.viewer` sees them: the members, their accounts and
    read receipts of the whole page at once; each chat's newest message and unread count."""
    conn, viewer = presenter.conn, presenter.viewer
    assert viewer is not None
    members = await chats.members_of_chats(conn, [chat.id for chat in found])
    everyone = {m.account.id: m.account for chat in found for m in members[chat.id]}
    sharers = await chats.sharing_read_receipts(
        conn, [viewer.id, *(i for i, a in everyone.items() if a.is_local)]
    )
    rendered = dict(zip(everyone, await presenter.accounts(everyone.values()), strict=True))
    mine = {c.id: next(m for m in members[c.id] if m.account.id == viewer.id) for c in found}
    latest = {
        chat.id: await chats.latest_message(conn, viewer, chat, mine[chat.id].left_at)
        for chat in found
    }
    messages = [status for status in latest.values() if status is not None]
    shown_messages = {int(entity["id"]): entity for entity in await presenter.statuses(messages)}
    bodies = []
    for chat in found:
        me, message = mine[chat.id], latest[chat.id]
        receipts = _receipts_shown(viewer, members[chat.id], sharers)
        bodies.append(
            {
                "id": str(chat.id),
                "uri": chat.context_uri,
                "name": chat.name,
                "group": chat.is_group,
                "owner_id": str(chat.owner_account_id) if chat.owner_account_id else None,
                "members": [
                    {
                        "account": rendered[member.account.id],
                        "joined_at": mastodon_time(member.joined_at),
                        "last_read_id": (
                            str(member.read_up_to_id)
                            if member.read_up_to_id and member.account.id in receipts
                            else None
                        ),
                    }
                    for member in members[chat.id]
                    if member.active
                ],
                "left": not me.active,
                "unread_count": await chats.unread_count(conn, viewer, chat, me),
                "last_read_id": str(me.read_up_to_id) if me.read_up_to_id else None,
                "last_message": shown_messages.get(message.id) if message is not None else None,
                "created_at": mastodon_time(chat.created_at),
                "updated_at": mastodon_time(chat.updated_at),
            }
        )
    return bodies


def _receipts_shown(viewer: Account, members: list[Member], sharers: set[int]) -> set[int]:
    """Whose read markers the viewer sees: its own, and others' only when both share them (a
    remote member's marker only ever arrives when that member shares it)."""
    if viewer.id not in sharers:
        return {viewer.id}
    return {viewer.id} | {
        m.account.id for m in members if not m.account.is_local or m.account.id in sharers
    }


async def _readable(conn: AsyncConnection, viewer: Account, chat_id: int) -> Chat:
    try:
        return await chats.chat_of_member(conn, viewer, chat_id)
    except ChatError as exc:
        raise _api_error(exc) from None


async def _chat_body(request: web.Request, viewer: Account, chat_id: int) -> dict[str, Any]:
    async with request.app[DATABASE].read() as conn:
        chat = await _readable(conn, viewer, chat_id)
        return await render_chat(Presenter(conn, request.app[URLS], viewer), chat)


def _api_error(exc: ChatError | InvalidPost | InvalidMedia) -> ApiError:
    status = exc.status if isinstance(exc, ChatError) else 422
    return ApiError(status, str(exc) if status == 404 else f"Validation failed: {exc}")


async def _people(request: web.Request, params: dict[str, Any]) -> list[Account]:
    """The people a request names: `account_ids[]` (as Mastodon lists them) and `acct[]`
    handles (`name` or `name@host`, resolved on their server when not known yet)."""
    ids = string_list(params, "account_ids", PEOPLE_PER_REQUEST_MAX)
    handles = string_list(params, "acct", PEOPLE_PER_REQUEST_MAX)
    if not ids and not handles:
        raise ApiError(422, "Validation failed: name someone (account_ids[] or acct[])")
    found: list[Account] = []
    async with request.app[DATABASE].read() as conn:
        for raw in ids:
            account = await get_account(conn, int(raw)) if raw.isdigit() else None
            if account is None or account.deleted_at is not None:
                raise ApiError(422, f"Validation failed: no account {raw}")
            found.append(account)
    for handle in handles:
        try:
            found.append(await request.app[FEDERATION].resolve_account(handle))
        except (LookupError, ActorUnavailable, FetchError, ValueError) as exc:
            raise ApiError(422, f"Validation failed: {handle} cannot be found: {exc}") from None
    return found


async def _act(request: web.Request, action: Any) -> Any:
    try:
        return await request.app[FEDERATION].perform(action)
    except (ChatError, InvalidPost, InvalidMedia) as exc:
        raise _api_error(exc) from None


# --- chats ------------------------------------------------------------------------------------


@routes.get(PREFIX)
async def list_chats(request: web.Request) -> web.Response:
    """The user's chats, the one with the newest message first."""
    me = await require_account(request, "read:statuses")
    page = page_request(await request_params(request))
    async with request.app[DATABASE].read() as conn:
        found = await chats.chats_of(conn, me, page)
        presenter = Presenter(conn, request.app[URLS], me)
        body = await render_chats(presenter, [chat for chat, _ in found])
    return paginated(request, body, [recency for _, recency in found])


@routes.post(PREFIX)
async def create_chat(request: web.Request) -> web.Response:
    """Start a chat with people (one person and no name: the one-to-one chat with them)."""
    me = await require_account(request, "write:conversations")
    params = await request_params(request)
    people = await _people(request, params)
    name = string(params, "name", max_length=1000)
    urls = request.app[URLS]

    async def start(conn: AsyncConnection, now: datetime) -> Any:
        return await chats.create_chat(conn, urls, me, people, name, now)

    chat = await _act(request, start)
    return json_body(await _chat_body(request, me, chat.id))


@routes.get(PREFIX + "/{id}")
async def get_chat(request: web.Request) -> web.Response:
    me = await require_account(request, "read:statuses")
    return json_body(await _chat_body(request, me, path_id(request)))


@routes.patch(PREFIX + "/{id}")
async def rename_chat(request: web.Request) -> web.Response:
    """The owner names (or, with an empty name, un-names) a group."""
    me = await require_account(request, "write:conversations")
    params = await request_params(request)
    if "name" not in params:
        raise ApiError(422, "Validation failed: name is missing")
    name = string(params, "name", max_length=1000)
    chat_id, urls = path_id(request), request.app[URLS]

    async def rename(conn: AsyncConnection, now: datetime) -> Any:
        chat = await chats.chat_of_member(conn, me, chat_id)
        return await chats.rename_chat(conn, urls, me, chat, name, now)

    await _act(request, rename)
    return json_body(await _chat_body(request, me, chat_id))


@routes.post(PREFIX + "/{id}/members")
async def add_members(request: web.Request) -> web.Response:
    me = await require_account(request, "write:conversations")
    people = await _people(request, await request_params(request))
    chat_id, urls = path_id(request), request.app[URLS]

    async def add(conn: AsyncConnection, now: datetime) -> Any:
        chat = await chats.chat_of_member(conn, me, chat_id)
        return await chats.add_members(conn, urls, me, chat, people, now)

    await _act(request, add)
    return json_body(await _chat_body(request, me, chat_id))


@routes.delete(PREFIX + "/{id}/members/{account_id}")
async def remove_member(request: web.Request) -> web.Response:
    me = await require_account(request, "write:conversations")
    chat_id, account_id, urls = path_id(request), path_id(request, "account_id"), request.app[URLS]

    async def remove(conn: AsyncConnection, now: datetime) -> Any:
        chat = await chats.chat_of_member(conn, me, chat_id)
        person = await get_account(conn, account_id)
        if person is None:
            raise ChatError("that person is not in this chat")
        return await chats.remove_member(conn, urls, me, chat, person, now)

    await _act(request, remove)
    return json_body(await _chat_body(request, me, chat_id))


@routes.post(PREFIX + "/{id}/leave")
async def leave_chat(request: web.Request) -> web.Response:
    me = await require_account(request, "write:conversations")
    chat_id, urls = path_id(request), request.app[URLS]

    async def leave(conn: AsyncConnection, now: datetime) -> Any:
        chat = await chats.chat_of_member(conn, me, chat_id)
        return await chats.leave_chat(conn, urls, me, chat, now)

    await _act(request, leave)
    return json_body(await _chat_body(request, me, chat_id))


@routes.post(PREFIX + "/{id}/read")
async def mark_read(request: web.Request) -> web.Response:
    """Read up to `last_read_id` (default: the newest message); the marker never goes back."""
    me = await require_account(request, "write:conversations")
    params = await request_params(request)
    up_to = integer(params, "last_read_id")
    chat_id, urls = path_id(request), request.app[URLS]

    async def read(conn: AsyncConnection, now: datetime) -> Any:
        chat = await chats.chat_of_member(conn, me, chat_id)
        return await chats.mark_read(conn, urls, me, chat, up_to, now)

    await _act(request, read)
    return json_body(await _chat_body(request, me, chat_id))


# --- messages ---------------------------------------------------------------------------------


@routes.get(PREFIX + "/{id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    """The chat's messages the user may read, newest first, paged as Mastodon timelines."""
    me = await require_account(request, "read:statuses")
    page = page_request(await request_params(request))
    async with request.app[DATABASE].read() as conn:
        chat = await _readable(conn, me, path_id(request))
        member = next(m for m in await chats.members_of(conn, chat.id) if m.account.id == me.id)
        query = chats.messages_for(me, chat, member.left_at)
        rows = (await conn.execute(paged(query, statuses_table.c.id, page))).all()
        found = [status_from_row(row) for row in newest_first(rows, page)]
        body = await Presenter(conn, request.app[URLS], me).statuses(found)
        await _with_payments(request, conn, me, body)
    return paginated(request, body)


async def _with_payments(
    request: web.Request, conn: AsyncConnection, viewer: Account, messages: list[dict[str, Any]]
) -> None:
    """Messages about a payment carry it (`kith_payment`), in its state now."""
    named = await chats.payments_named(conn, [int(m["id"]) for m in messages])
    currencies, now = request.app[FEDERATION].payments.currencies, request.app[CLOCK]()
    for message in messages:
        uri = named.get(int(message["id"]))
        if uri is not None:
            message["kith_payment"] = await chat_payment_entity(conn, uri, viewer, currencies, now)


@routes.post(PREFIX + "/{id}/messages")
async def send_message(request: web.Request) -> web.Response:
    """A message to everyone in the chat: a direct status naming each member, in the
    chat's context. An `Idempotency-Key` header makes a retry return the first message."""
    me = await require_account(request, "write:statuses")
    params = await request_params(request)
    text = string(params, "status", "", max_length=TEXT_LENGTH_MAX) or ""
    try:
        media_ids = checked_media_ids(params["media_ids"]) if params.get("media_ids") else []
    except InvalidMedia as exc:
        raise ApiError(422, f"Validation failed: {exc}") from None
    if not text.strip() and not media_ids:
        raise ApiError(422, "Validation failed: Text can't be blank")
    reply_to_id = integer(params, "in_reply_to_id")
    key = request.headers.get("Idempotency-Key", "")[:64] or None
    chat_id, urls = path_id(request), request.app[URLS]

    async def send(conn: AsyncConnection, now: datetime) -> Any:
        if key is not None:
            earlier = await posting.status_for_idempotency_key(conn, me, key)
            if earlier is not None:
                return earlier, []
        chat = await chats.chat_of_member(conn, me, chat_id)
        parent = await status_by_id(conn, reply_to_id) if reply_to_id is not None else None
        if reply_to_id is not None and parent is None:
            raise ChatError("the message replied to is not in this chat")
        status, outbound = await posting.post_to_chat(
            conn, urls, me, chat, text, now, media_ids, parent
        )
        if key is not None:
            await posting.remember_idempotency_key(conn, me, key, status, now)
        return status.id, outbound

    status_id = await _act(request, send)
    async with request.app[DATABASE].read() as conn:
        status = await status_by_id(conn, status_id)
        assert status is not None
        return json_body(await Presenter(conn, urls, me).status(status))


# --- preferences ------------------------------------------------------------------------------


@routes.get("/api/kith/v1/preferences")
async def get_preferences(request: web.Request) -> web.Response:
    me = await require_account(request, "read:accounts")
    async with request.app[DATABASE].read() as conn:
        return json_body({"read_receipts": await chats.shares_read_receipts(conn, me.id)})


@routes.patch("/api/kith/v1/preferences")
async def update_preferences(request: web.Request) -> web.Response:
    """Whether the user's read markers reach the other members of its chats (off unless
    turned on; they see them only if they share theirs too)."""
    me = await require_account(request, "write:accounts")
    params = await request_params(request)
    if "read_receipts" not in params:
        raise ApiError(422, "Validation failed: read_receipts is missing")
    share = boolean(params, "read_receipts")
    async with request.app[DATABASE].transaction() as conn:
        await chats.share_read_receipts(conn, me.id, share)
    return json_body({"read_receipts": share})
