"""Chats in the browser: the list with unread counts, one-to-one and group chats with live
messages and pictures, people added and leaving, and money asked for and sent in the chat,
shown with its live state and a Pay button.

The pages read what the chats API shows (server/api/chats.py `render_chat`, the payment of a
message from server/api/payments.py) and act through the same domain calls.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from payments import requests as payment_requests
from payments.money import AmountError, parse_amount
from payments.parties import PaymentError
from protocol import payments as wire
from server.api.chats import render_chat, render_chats
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter
from server.api.payments import chat_payment_entity
from server.appkeys import CLOCK, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, get_account
from server.media import MediaRejected
from server.paying import PayeeNode, Payments
from server.social import chats
from server.social.chats import Chat, ChatError
from server.social.media import InvalidMedia
from server.social.posting import TEXT_LENGTH_MAX, InvalidPost, post_to_chat
from server.social.statuses import status_by_id, status_from_row
from server.social.timelines import PageRequest
from server.storage.tables import statuses
from server.web.money import format_money, number_style, parse_money
from server.web.pages import (
    FormErrors,
    is_partial,
    page,
    read_form,
    render,
    render_fragment,
    require_viewer,
    see_other,
    text_field,
)
from server.web.uploads import store_pictures

routes = web.RouteTableDef()
MESSAGES_PER_PAGE = 40
CHATS_PER_PAGE = 40
PEOPLE_PER_FORM_MAX = 20
NOTE_LENGTH_MAX = 640
_HANDLE = re.compile(r"@?[\w.-]+(?:@[\w.-]+(?::\d+)?)?")


def _payments(request: web.Request) -> Payments:
    return request.app[FEDERATION].payments


def _number(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) >= 2**63:
        raise ApiError(404, "Not found", "There is no such chat.")
    return int(raw)


async def _chat(request: web.Request, me: Account) -> Chat:
    async with request.app[DATABASE].read() as conn:
        try:
            return await chats.chat_of_member(conn, me, _number(request.match_info["id"]))
        except ChatError:
            raise ApiError(404, "Not found", "There is no such chat.") from None


async def _resolve_people(request: web.Request, text: str) -> list[Account]:
    """`@name` or `@name@host`, separated by spaces or commas; a ValueError names the first
    that cannot be found."""
    handles = [h for h in re.split(r"[\s,]+", text.strip()) if h]
    if not handles:
        raise ValueError("Name at least one person, as @name or @name@server.")
    if len(handles) > PEOPLE_PER_FORM_MAX:
        raise ValueError(f"Name at most {PEOPLE_PER_FORM_MAX} people at once.")
    found = []
    for handle in handles:
        if not _HANDLE.fullmatch(handle):
            raise ValueError(f"“{handle}” is not an address such as @name@server.")
        try:
            found.append(await request.app[FEDERATION].resolve_account(handle))
        except (LookupError, ActorUnavailable, FetchError, ValueError):
            raise ValueError(f"Nobody called {handle} could be found.") from None
    return found


# --- the list ----------------------------------------------------------------------------------


async def _list_values(request: web.Request, me: Account) -> dict[str, Any]:
    page = PageRequest(limit=CHATS_PER_PAGE, max_id=_cursor(request, "max_id"))
    async with request.app[DATABASE].read() as conn:
        found = await chats.chats_of(conn, me, page)
        presenter = Presenter(conn, request.app[URLS], me)
        entities = await render_chats(presenter, [chat for chat, _ in found])
    older = found[-1][1] if len(found) == CHATS_PER_PAGE else None
    return {"chats": entities, "older": older}


def _cursor(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else None


@routes.get("/chats")
@page
async def chat_list(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    return await render(request, "web/chats.html", viewer=me, **await _list_values(request, me))


@routes.post("/chats")
@page
async def start_chat(request: web.Request) -> web.Response:
    """A chat with the people named (one person and no name: the one-to-one chat)."""
    me = await require_viewer(request)
    form = await read_form(request)
    people_text, name = text_field(form, "people", 2000), text_field(form, "name", 200)
    errors = FormErrors()
    try:
        people = await _resolve_people(request, people_text)
    except ValueError as exc:
        errors["people"] = str(exc)
        people = []
    if not errors:
        urls = request.app[URLS]

        async def start(conn: AsyncConnection, now: datetime) -> Any:
            return await chats.create_chat(conn, urls, me, people, name or None, now)

        try:
            chat = await request.app[FEDERATION].perform(start)
        except ChatError as exc:
            errors["people" if "name" not in str(exc) else "name"] = str(exc)
    if errors:
        values = await _list_values(request, me)
        return await render(
            request, "web/chats.html", 422, viewer=me, errors=errors,
            values={"people": people_text, "name": name}, **values,
        )  # fmt: skip
    return see_other(f"/chats/{chat.id}")


@routes.get("/chats/{id}/item")
@page
async def chat_item(request: web.Request) -> web.Response:
    """One chat's line in the list (kith.js refreshes it when the chat changes)."""
    me = await require_viewer(request)
    chat = await _chat(request, me)
    async with request.app[DATABASE].read() as conn:
        entity = await render_chat(Presenter(conn, request.app[URLS], me), chat)
    return await render_fragment(request, "web/chat_item.html", viewer=me, chat=entity)


# --- one chat ----------------------------------------------------------------------------------


async def _messages(
    request: web.Request, conn: AsyncConnection, me: Account, chat: Chat, query: Any
) -> list[dict[str, Any]]:
    """Messages (oldest first) as the Mastodon API shows them, each with its payment."""
    found = [status_from_row(row) for row in await conn.execute(query)]
    found.sort(key=lambda s: s.id)
    entities = await Presenter(conn, request.app[URLS], me).statuses(found)
    named = await chats.payments_named(conn, [s.id for s in found])
    currencies, now = _payments(request).currencies, request.app[CLOCK]()
    for entity in entities:
        uri = named.get(int(entity["id"]))
        if uri is not None:
            shown = await chat_payment_entity(conn, uri, me, currencies, now)
            if "amount" in shown:
                currency = currencies.get(shown["currency"])
                minor = parse_amount(shown["amount"], currency)
                shown["shown_amount"] = _shown(request, minor, currency.code)
            entity["kith_payment"] = shown
    return entities


def _shown(request: web.Request, minor: int, code: str) -> str:
    """An amount as the reader writes numbers (their Accept-Language), at its scale."""
    style = number_style(request.headers.get("Accept-Language"))
    return format_money(minor, _payments(request).currencies.get(code), style)


def _left_at(members: list[chats.Member], me: Account) -> datetime | None:
    return next(m.left_at for m in members if m.account.id == me.id)


async def _chat_values(
    request: web.Request, me: Account, chat: Chat, max_id: int | None = None
) -> dict[str, Any]:
    async with request.app[DATABASE].read() as conn:
        entity = await render_chat(Presenter(conn, request.app[URLS], me), chat)
        members = await chats.members_of(conn, chat.id)
        query = chats.messages_for(me, chat, _left_at(members, me))
        if max_id is not None:
            query = query.where(statuses.c.id < max_id)
        query = query.order_by(statuses.c.id.desc()).limit(MESSAGES_PER_PAGE)
        messages = await _messages(request, conn, me, chat, query)
    older = messages[0]["id"] if len(messages) == MESSAGES_PER_PAGE else None
    others = [m["account"] for m in entity["members"] if m["account"]["id"] != str(me.id)]
    return {
        "chat": entity,
        "messages": messages,
        "older": older,
        "others": others,
        "is_owner": entity["owner_id"] == str(me.id),
        "currency": "EUR",
    }


@routes.get("/chats/{id}")
@page
async def chat_page(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    max_id = _cursor(request, "max_id")
    values = await _chat_values(request, me, chat, max_id)
    if max_id is None and values["chat"]["unread_count"]:
        await _read(request, me, chat, None)
        values["chat"]["unread_count"] = 0
    return await render(request, "web/chat.html", viewer=me, **values)


@routes.get("/chats/{id}/messages")
@page
async def new_messages(request: web.Request) -> web.Response:
    """The messages after `after` (kith.js adds them to the open chat as they arrive)."""
    me = await require_viewer(request)
    chat = await _chat(request, me)
    after = _cursor(request, "after") or 0
    async with request.app[DATABASE].read() as conn:
        members = await chats.members_of(conn, chat.id)
        query = chats.messages_for(me, chat, _left_at(members, me)).where(statuses.c.id > after)
        query = query.order_by(statuses.c.id.asc()).limit(MESSAGES_PER_PAGE)
        messages = await _messages(request, conn, me, chat, query)
    return await render_fragment(
        request, "web/chat_messages.html", viewer=me, messages=messages, chat_id=str(chat.id)
    )


@routes.get("/chats/{id}/messages/{status_id}")
@page
async def one_message(request: web.Request) -> web.Response:
    """One message, as it stands now (a payment's state changed)."""
    me = await require_viewer(request)
    chat = await _chat(request, me)
    status_id = _number(request.match_info["status_id"])
    async with request.app[DATABASE].read() as conn:
        status = await status_by_id(conn, status_id)
        if status is None or not await chats.is_message_of(conn, me, chat, status):
            raise ApiError(404, "Not found", "There is no such message.")
        query = chats.messages_for(me, chat, None).where(statuses.c.id == status_id)
        messages = await _messages(request, conn, me, chat, query)
    return await render_fragment(
        request, "web/chat_messages.html", viewer=me, messages=messages, chat_id=str(chat.id)
    )


async def _again(
    request: web.Request, me: Account, chat: Chat, errors: FormErrors, **values: Any
) -> web.Response:
    """The chat page again with what was wrong next to its field (and nothing changed)."""
    shown = await _chat_values(request, me, chat)
    return await render(
        request, "web/chat.html", 422, viewer=me, errors=errors, values=values, **shown
    )


@routes.post("/chats/{id}/messages")
@page
async def send_message(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    form = await read_form(request)
    text = text_field(form, "status", TEXT_LENGTH_MAX)
    files = [f for f in form.getall("pictures", []) if isinstance(f, web.FileField) and f.filename]
    errors = FormErrors()
    if len(text) > TEXT_LENGTH_MAX:
        errors["status"] = f"A message has at most {TEXT_LENGTH_MAX} characters."
    elif not text.strip() and not files:
        errors["status"] = "Write something or add a picture."
    elif len(files) > 4:
        errors["pictures"] = "At most four pictures in a message."
    media_ids: list[int] = []
    if not errors and files:
        try:
            media_ids = await store_pictures(request, me, files, None)
        except (MediaRejected, InvalidMedia) as exc:
            errors["pictures"] = str(exc)
    if not errors:
        urls = request.app[URLS]

        async def send(conn: AsyncConnection, now: datetime) -> Any:
            return await post_to_chat(conn, urls, me, chat, text, now, media_ids)

        try:
            await request.app[FEDERATION].perform(send)
        except (ChatError, InvalidPost, InvalidMedia) as exc:
            errors["status"] = str(exc)
    if errors:
        return await _again(request, me, chat, errors, status=text)
    if is_partial(request):
        # The message comes back over the stream; the form is emptied for the next one.
        return await render_fragment(request, "web/chat_compose.html", viewer=me, chat_id=chat.id)
    return see_other(f"/chats/{chat.id}#compose")


async def _read(request: web.Request, me: Account, chat: Chat, up_to: int | None) -> None:
    urls = request.app[URLS]

    async def read(conn: AsyncConnection, now: datetime) -> Any:
        return await chats.mark_read(conn, urls, me, chat, up_to, now)

    with contextlib.suppress(ChatError):  # a message that went meanwhile: nothing to mark
        await request.app[FEDERATION].perform(read)


@routes.post("/chats/{id}/read")
@page
async def read_chat(request: web.Request) -> web.Response:
    """Read up to the newest message (kith.js says so while the chat is open)."""
    me = await require_viewer(request)
    chat = await _chat(request, me)
    await read_form(request)
    await _read(request, me, chat, None)
    if is_partial(request):
        return web.Response(status=204)
    return see_other(f"/chats/{chat.id}")


# --- members and the name ------------------------------------------------------------------------


async def _change(
    request: web.Request, me: Account, chat: Chat, field: str, change: Any, **values: Any
) -> web.Response:
    try:
        await request.app[FEDERATION].perform(change)
    except ChatError as exc:
        return await _again(request, me, chat, FormErrors({field: str(exc)}), **values)
    return see_other(f"/chats/{chat.id}")


@routes.post("/chats/{id}/members")
@page
async def add_people(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    form = await read_form(request)
    text = text_field(form, "people", 2000)
    try:
        people = await _resolve_people(request, text)
    except ValueError as exc:
        return await _again(request, me, chat, FormErrors({"people": str(exc)}), people=text)
    urls = request.app[URLS]

    async def add(conn: AsyncConnection, now: datetime) -> Any:
        return await chats.add_members(conn, urls, me, chat, people, now)

    return await _change(request, me, chat, "people", add, people=text)


@routes.post("/chats/{id}/members/{account_id}/remove")
@page
async def remove_person(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    await read_form(request)
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        person = await get_account(conn, _number(request.match_info["account_id"]))
    if person is None:
        raise ApiError(404, "Not found", "That person is not in this chat.")

    async def remove(conn: AsyncConnection, now: datetime) -> Any:
        return await chats.remove_member(conn, urls, me, chat, person, now)

    return await _change(request, me, chat, "people", remove)


@routes.post("/chats/{id}/name")
@page
async def rename(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    form = await read_form(request)
    name = text_field(form, "name", 200)
    urls = request.app[URLS]

    async def change(conn: AsyncConnection, now: datetime) -> Any:
        return await chats.rename_chat(conn, urls, me, chat, name or None, now)

    return await _change(request, me, chat, "name", change, name=name)


@routes.get("/chats/{id}/leave")
@page
async def leave_page(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    values = await _chat_values(request, me, chat)
    return await render(request, "web/chat_confirm.html", viewer=me, step="leave", **values)


@routes.post("/chats/{id}/leave")
@page
async def leave(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    await read_form(request)
    urls = request.app[URLS]

    async def go(conn: AsyncConnection, now: datetime) -> Any:
        return await chats.leave_chat(conn, urls, me, chat, now)

    await _change(request, me, chat, "", go)
    return see_other("/chats")


# --- money in the chat -------------------------------------------------------------------------


@dataclass
class MoneyForm:
    """What a chat's money form asked for, with what is wrong with it."""

    amount: Any  # a wire Amount, or None when the amount is wrong
    note: str
    person: Account | None
    values: dict[str, str]  # as typed, to show the form again
    errors: FormErrors


async def _money_form(
    request: web.Request, me: Account, chat: Chat, form: MultiDictProxy[Any], which: str
) -> MoneyForm:
    """The amount (as people type it), the note and the member named in the `ask` or `send`
    form of a chat."""
    errors = FormErrors()
    values = {k: text_field(form, k, 640) for k in ("amount", "currency", "note", "person")}
    values["form"] = which
    note = text_field(form, "note", NOTE_LENGTH_MAX)
    amount = None
    try:
        currency = _payments(request).currencies.get(values["currency"].strip().upper())
        minor = parse_money(values["amount"], currency)
        amount = wire.Amount(currency.code, minor, currency.scale)
    except AmountError as exc:
        errors["amount"] = str(exc)
    if len(note) > NOTE_LENGTH_MAX:
        errors["note"] = f"A note has at most {NOTE_LENGTH_MAX} characters."
    person = await _person(request, me, chat, values["person"])
    if person is None:
        verb = "ask" if which == "ask" else "pay"
        errors["person"] = f"Choose who to {verb}, from the people in this chat."
    return MoneyForm(amount, note, person, values, errors)


async def _person(request: web.Request, me: Account, chat: Chat, raw: str) -> Account | None:
    """One of the other members: the one named, or the only one."""
    async with request.app[DATABASE].read() as conn:
        others = [
            m.account
            for m in await chats.members_of(conn, chat.id)
            if m.active and m.account.id != me.id
        ]
    if not raw and len(others) == 1:
        return others[0]
    return next((o for o in others if str(o.id) == raw), None)


@routes.post("/chats/{id}/request")
@page
async def request_money(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    asked = await _money_form(request, me, chat, await read_form(request), "ask")
    payer, amount, note, values = asked.person, asked.amount, asked.note, asked.values
    if asked.errors:
        return await _again(request, me, chat, asked.errors, **values)
    payments = _payments(request)
    try:
        by_kith = await payments.kith_node_of(payer) is not None  # type: ignore[arg-type]
    except ActorUnavailable:
        return await _again(
            request, me, chat, FormErrors({"": "Their server cannot be reached now."}), **values
        )

    async def ask(conn: AsyncConnection, now: datetime) -> Any:
        return await payments.request_in_chat(
            conn, me, payer, chat, amount, note, None, now, payer_takes_kith_payments=by_kith
        )

    try:
        await request.app[FEDERATION].perform(ask)
    except (PaymentError, ChatError) as exc:
        return await _again(request, me, chat, FormErrors({"amount": str(exc)}), **values)
    return see_other(f"/chats/{chat.id}#compose")


@routes.post("/chats/{id}/send")
@page
async def send_money(request: web.Request) -> web.Response:
    """Money to someone in the chat, after a confirmation step (the second POST carries
    `confirm` and the payment's key, so a double submit sends once)."""
    me = await require_viewer(request)
    chat = await _chat(request, me)
    form = await read_form(request)
    sending = await _money_form(request, me, chat, form, "send")
    payee, amount, note, values = sending.person, sending.amount, sending.note, sending.values
    if sending.errors:
        return await _again(request, me, chat, sending.errors, **values)
    assert payee is not None
    payments = _payments(request)
    key = text_field(form, "key", 64)
    if text_field(form, "confirm", 4) != "1" or not re.fullmatch(r"[\w-]{16,64}", key):
        shown = await _chat_values(request, me, chat)
        return await render(
            request, "web/chat_confirm.html", viewer=me, step="send", values=values,
            payee=payee, shown_amount=_shown(request, amount.minor, amount.currency),
            key=secrets.token_urlsafe(24), **shown,
        )  # fmt: skip
    try:
        node = await payments.payee_node(payee)
    except (PaymentError, ActorUnavailable) as exc:
        return await _again(request, me, chat, FormErrors({"": str(exc)}), **values)
    transfer_uri = payments.transfer_uri(me, f"web:{key}")

    async def send(conn: AsyncConnection, now: datetime) -> Any:
        return await payments.send_in_chat(
            conn, me, PayeeNode(node, payee), chat, amount, transfer_uri, note, now
        )

    try:
        await request.app[FEDERATION].perform(send)
    except (PaymentError, ChatError) as exc:
        return await _again(request, me, chat, FormErrors({"amount": str(exc)}), **values)
    return see_other(f"/chats/{chat.id}#compose")


async def _request_to_pay(request: web.Request, me: Account) -> Any:
    async with request.app[DATABASE].read() as conn:
        record = await payment_requests.request_by_id(
            conn, _number(request.match_info["request_id"])
        )
    if record is None or record.payer_account_id != me.id:
        raise ApiError(404, "Not found", "There is no such request to you.")
    return record


@routes.get("/chats/{id}/pay/{request_id}")
@page
async def pay_page(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    record = await _request_to_pay(request, me)
    shown = await _chat_values(request, me, chat)
    return await render(
        request, "web/chat_confirm.html", viewer=me, step="pay", record=record,
        state=record.state(request.app[CLOCK]()).value,
        shown_amount=_shown(request, record.amount, record.currency),
        key=secrets.token_urlsafe(24), **shown,
    )  # fmt: skip


@routes.post("/chats/{id}/pay/{request_id}")
@page
async def pay(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    chat = await _chat(request, me)
    form = await read_form(request)
    record = await _request_to_pay(request, me)
    key = text_field(form, "key", 64)
    if not re.fullmatch(r"[\w-]{16,64}", key):
        raise ApiError(422, "This form has expired", "Go back, reload the page and pay again.")
    payments = _payments(request)
    transfer_uri = payments.transfer_uri(me, f"web:{key}")
    if not record.is_ours:
        try:
            await request.app[FEDERATION].directory.get(record.settlement_node)
        except ActorUnavailable:
            return await _again(
                request, me, chat, FormErrors({"": "Their server cannot be reached now."})
            )

    async def go(conn: AsyncConnection, now: datetime) -> Any:
        current = await payment_requests.request_by_uri(conn, record.uri, lock=True)
        assert current is not None
        return await payments.pay(conn, me, current, transfer_uri, now)

    try:
        await request.app[FEDERATION].perform(go)
    except PaymentError as exc:
        return await _again(request, me, chat, FormErrors({"": str(exc)}))
    return see_other(f"/chats/{chat.id}#compose")
