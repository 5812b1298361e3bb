"""The wallet: balances, sending and requesting money (a shareable link and a QR code), paying
or declining requests and accepting money after a confirmation step, the history (filtered,
as CSV), receipts whose signatures are checked, and the fragments that keep the pages live.

Every action goes through the same calls as the payments API (server/api/payments.py,
server/paying.py). A payment's confirmation step carries a random key, sent again with the
confirmation: it is the payment's Idempotency-Key, so a double submit pays once.
"""

from __future__ import annotations

import io
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

import segno
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorUnavailable
from payments import requests, settlement
from payments.money import AmountError
from payments.parties import PaymentError
from payments.requests import RequestRecord
from payments.settlement import SettlementRecord
from protocol.payments import Amount
from server.api.errors import ApiError
from server.api.payments import (
    NOTE_LENGTH_MAX,
    HistoryFilter,
    check_payable,
    know_node,
    receipt_of,
    resolve_party,
    transactions_csv,
    transfer_entity,
)
from server.api.responses import json_body
from server.appkeys import CLOCK, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account
from server.paying import PayeeNode
from server.social import chats
from server.social.chats import ChatError
from server.storage.ids import first_id_after
from server.wallets import balances, changes_since
from server.web.money import parse_money
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
from server.web.wallet_view import RECENT, WalletView

routes = web.RouteTableDef()
HISTORY_PAGE = 25
CSV_ROWS_MAX = 10_000
HANDLE_MAX = 2048
_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
_ID = re.compile(r"[0-9]{1,19}")
# How long a request stays open (the payer's server refuses it after that).
EXPIRY_CHOICES = (
    (str(3600), "1 hour"),
    (str(86400), "1 day"),
    (str(7 * 86400), "1 week"),
    (str(30 * 86400), "30 days"),
)
VIEWS = ("wallet", "request", "receipt")


def _id(request: web.Request, name: str = "id") -> int:
    value = request.match_info.get(name, "")
    if not _ID.fullmatch(value):
        raise ApiError(404, "Not found", "There is no such payment.")
    return int(value)


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


# --- the wallet page --------------------------------------------------------------------------


@routes.get("/wallet")
@page
async def wallet(request: web.Request) -> web.Response:
    """Balances, what waits for an answer, sending and requesting, the latest payments."""
    me = await require_viewer(request)
    return await _wallet(request, me)


async def _wallet(
    request: web.Request, me: Account, status: int = 200, **forms: Any
) -> web.Response:
    view = WalletView(request, me)
    since = _changes_mark(request)  # before reading: what is stored later comes with /changes
    async with request.app[DATABASE].read() as conn:
        lines = await view.balances(conn)
        waiting = await view.waiting(conn)
        mine = await view.my_requests(conn)
        recent = await view.history(conn, HistoryFilter(), RECENT + len(waiting))
    recent = [item for item in recent if not item["awaits_me"]][:RECENT]
    return await render(
        request,
        "web/wallet.html",
        status,
        viewer=me,
        view=view,
        balances=lines,
        waiting=waiting,
        my_requests=mine,
        recent=recent,
        send=forms.get("send") or _send_form(view, lines),
        ask=forms.get("ask") or _ask_form(view, lines),
        expiry_choices=EXPIRY_CHOICES,
        payments_since=since,
    )


def _send_form(view: WalletView, lines: list, **state: Any) -> dict[str, Any]:
    """The send section's state: values, errors, a confirmation or a notice."""
    currencies = [line.currency for line in lines]
    values = state.pop("values", None) or {"currency": currencies[0] if currencies else "EUR"}
    blank = {"errors": FormErrors(), "confirm": None, "done": None}
    return {"values": values, "currencies": currencies, **blank, **state}


def _ask_form(view: WalletView, lines: list, **state: Any) -> dict[str, Any]:
    held = [line.currency for line in lines]
    default = held[0] if held else "EUR"
    values = state.pop("values", None) or {"currency": default, "expires_in": ""}
    return {"values": values, "errors": FormErrors(), "currencies": held, **state}


# --- sending ----------------------------------------------------------------------------------


@routes.post("/wallet/send")
@page
async def send(request: web.Request) -> web.Response:
    """Send money: checked, then confirmed (the confirmation carries the payment's key)."""
    me = await require_viewer(request)
    form = await read_form(request)
    view = WalletView(request, me)
    values = _money_values(form, "to")
    if form.get("edit") == "1":
        return await _send_answer(request, view, values=values)
    errors, checked = await _check_send(request, view, values)
    if errors:
        return await _send_answer(request, view, 422, values=values, errors=errors)
    payee, node, amount = checked
    key = text_field(form, "key", 64)
    if form.get("confirm") != "1" or not _KEY.fullmatch(key):
        confirm = {
            "payee": await _person_of(request, view, payee),
            "shown_amount": view.money(amount.minor, amount.currency),
            "key": secrets.token_urlsafe(24),
        }
        return await _send_answer(request, view, values=values, confirm=confirm)
    try:
        sent = await _send_now(request, view, payee, node, amount, key, values["note"])
    except (PaymentError, ChatError) as exc:
        errors = FormErrors({"": _sentence(str(exc))})
        return await _send_answer(request, view, 422, values=values, errors=errors)
    if not is_partial(request):
        return see_other(f"/wallet/transfers/{sent.id}")
    async with request.app[DATABASE].read() as conn:
        item = await view.transfer_item(conn, sent)
    done = {"item": item, "text": f"Sent {item['shown_amount']} to {item['other'].name}."}
    return await _send_answer(request, view, done=done, sent=item)


def _money_values(form: MultiDictProxy[Any], person: str) -> dict[str, str]:
    """What the send and ask forms share, as typed: the other person, amount, currency, note."""
    return {
        person: text_field(form, person, HANDLE_MAX).strip(),
        "amount": text_field(form, "amount", 40).strip(),
        "currency": text_field(form, "currency", 12).strip().upper(),
        "note": text_field(form, "note", NOTE_LENGTH_MAX).strip(),
    }


async def _check_send(
    request: web.Request, view: WalletView, values: dict[str, str]
) -> tuple[FormErrors, Any]:
    """The send form's problems by field, or the payee, their node and the amount."""
    errors = FormErrors()
    amount = _amount(view, values, errors)
    if len(values["note"]) > NOTE_LENGTH_MAX:
        errors["note"] = f"A note has at most {NOTE_LENGTH_MAX} characters."
    if amount is not None:
        async with request.app[DATABASE].read() as conn:
            held = {b.currency: b for b in await balances(conn, view.me)}
        available = held[amount.currency].available if amount.currency in held else 0
        if amount.minor > available:
            has = view.money(available, amount.currency)
            errors["amount"] = f"You have only {has} available."
    payee = await _payee(request, view, values["to"], errors)
    if errors or payee is None or amount is None:
        return errors, None
    try:
        node = await view.payments.payee_node(payee)
    except PaymentError as exc:
        errors["to"] = _sentence(str(exc))
        return errors, None
    except ActorUnavailable:
        errors["to"] = "Their server cannot be reached now. Try again later."
        return errors, None
    return errors, (payee, node, amount)


def _amount(view: WalletView, values: dict[str, str], errors: FormErrors) -> Amount | None:
    """The typed amount in the chosen currency (its own scale), or an error by field."""
    try:
        currency = view.payments.currencies.get(values["currency"])
    except AmountError:
        errors["currency"] = "Choose a currency this server knows, such as EUR."
        return None
    try:
        minor = parse_money(values["amount"], currency)
    except AmountError as exc:
        errors["amount"] = str(exc)
        return None
    return Amount(currency.code, minor, currency.scale)


async def _payee(
    request: web.Request, view: WalletView, handle: str, errors: FormErrors, field: str = "to"
) -> Account | None:
    """The person a handle names (fetched from their server if need be), who may be paid."""
    if not handle:
        errors[field] = "Enter who it is for, such as @name@example.org."
        return None
    try:
        person = await resolve_party(request, handle)
    except ApiError:
        errors[field] = f"No one called {handle} could be found."
        return None
    if person.id == view.me.id:
        errors[field] = "That is you. Choose someone else."
        return None
    if field == "to":
        try:
            await check_payable(request, request.app[URLS].actor(person))
        except ApiError as exc:
            errors[field] = _sentence(exc.error)
            return None
    return person


async def _person_of(request: web.Request, view: WalletView, account: Account) -> Any:
    async with request.app[DATABASE].read() as conn:
        return await view.person(conn, request.app[URLS].actor(account))


async def _send_now(
    request: web.Request,
    view: WalletView,
    payee: Account,
    node: str,
    amount: Amount,
    key: str,
    note: str,
) -> SettlementRecord:
    """The transfer, in one transaction; with a note, the one-to-one chat with the payee
    says it (a transfer itself carries no text). The key makes a repeat the same payment."""
    payments, urls = view.payments, request.app[URLS]
    transfer_uri = payments.transfer_uri(view.me, f"web:{key}")
    to = PayeeNode(node, payee)

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        if not note:
            return await payments.send(conn, view.me, to, amount, transfer_uri, now)
        chat, outbound = await chats.create_chat(conn, urls, view.me, [payee], None, now)
        sent, more = await payments.send_in_chat(
            conn, view.me, to, chat, amount, transfer_uri, note, now
        )
        return sent, outbound + more

    return await request.app[FEDERATION].perform(act)


async def _send_answer(
    request: web.Request, view: WalletView, status: int = 200, **state: Any
) -> web.Response:
    """The send section again (a fragment for kith.js, the whole wallet otherwise)."""
    sent = state.pop("sent", None)
    async with request.app[DATABASE].read() as conn:
        lines = await view.balances(conn)
    section = _send_form(view, lines, **state)
    if not is_partial(request):
        return await _wallet(request, view.me, status, send=section)
    return await render_fragment(
        request,
        "web/wallet_fragment.html",
        status,
        viewer=view.me,
        view=view,
        parts=["send", "balances"] + (["item"] if sent else []),
        send=section,
        balances=lines,
        item=sent,
        kind="transfer",
        insert="recent",
    )


# --- requesting -------------------------------------------------------------------------------


@routes.post("/wallet/requests")
@page
async def ask(request: web.Request) -> web.Response:
    """Request money from someone: the request page then shows its link and QR code."""
    me = await require_viewer(request)
    form = await read_form(request)
    view = WalletView(request, me)
    values = _money_values(form, "payer")
    values["expires_in"] = text_field(form, "expires_in", 12)
    errors = FormErrors()
    amount = _amount(view, values, errors)
    if len(values["note"]) > NOTE_LENGTH_MAX:
        errors["note"] = f"A note has at most {NOTE_LENGTH_MAX} characters."
    lifetime = _lifetime(values["expires_in"], errors)
    payer = await _payee(request, view, values["payer"], errors, field="payer")
    if not errors and payer is not None and amount is not None:
        try:
            record = await _ask_now(request, view, payer, amount, values["note"], lifetime)
        except ActorUnavailable:
            errors["payer"] = "Their server cannot be reached now. Try again later."
        except PaymentError as exc:
            errors[""] = _sentence(str(exc))
        else:
            return see_other(f"/wallet/requests/{record.id}")
    async with request.app[DATABASE].read() as conn:
        lines = await view.balances(conn)
    section = _ask_form(view, lines, values=values, errors=errors)
    return await _wallet(request, me, 422, ask=section)


def _lifetime(value: str, errors: FormErrors) -> timedelta | None:
    if value == "":
        return None  # the server's default
    if value not in dict(EXPIRY_CHOICES):
        errors["expires_in"] = "Choose how long the request stays open."
        return None
    return timedelta(seconds=int(value))


async def _ask_now(
    request: web.Request,
    view: WalletView,
    payer: Account,
    amount: Amount,
    note: str,
    lifetime: timedelta | None,
) -> RequestRecord:
    payments = view.payments
    by_kith = await payments.kith_node_of(payer) is not None

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        return await payments.create_request(
            conn, view.me, payer, amount, note, lifetime, now, payer_takes_kith_payments=by_kith
        )

    return await request.app[FEDERATION].perform(act)


@routes.get("/wallet/requests/{id}")
@page
async def request_page(request: web.Request) -> web.Response:
    """One request: its link and QR code for the payee, Pay and Decline for the payer."""
    me = await require_viewer(request)
    view = WalletView(request, me)
    record = await _my_request(request, me)
    async with request.app[DATABASE].read() as conn:
        item = await view.request_item(conn, record)
    return await render(request, "web/wallet_request.html", viewer=me, view=view, item=item)


@routes.get("/wallet/requests/{id}/qr.svg")
@page
async def request_qr(request: web.Request) -> web.Response:
    """The request's link as a QR code (SVG, made here: no inline script or style)."""
    me = await require_viewer(request)
    record = await _my_request(request, me)
    if record.payee_account_id != me.id or not record.is_ours:
        raise ApiError(404, "Not found", "There is no such payment request.")
    out = io.BytesIO()
    segno.make(record.uri, error="m").save(
        out, kind="svg", scale=4, border=4, dark="#000", light="#fff", xmldecl=False,
        omitsize=True,  # a viewBox instead: the page sizes it
    )  # fmt: skip
    return web.Response(
        body=out.getvalue(),
        content_type="image/svg+xml",
        headers={
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=86400",
        },
    )


async def _my_request(request: web.Request, me: Account) -> RequestRecord:
    async with request.app[DATABASE].read() as conn:
        record = await requests.request_by_id(conn, _id(request))
    if record is None or me.id not in (record.payee_account_id, record.payer_account_id):
        raise ApiError(404, "Not found", "There is no such payment request.")
    return record


# --- paying, declining, cancelling a request --------------------------------------------------


@routes.post("/wallet/requests/{id}/pay")
@page
async def pay(request: web.Request) -> web.Response:
    """Pay a request to the user: first the confirmation, then (with its key) the payment."""
    me = await require_viewer(request)
    form = await read_form(request)
    view, where = WalletView(request, me), _view_of(form)
    record = await _my_request(request, me)
    if record.payer_account_id != me.id:
        raise ApiError(404, "Not found", "There is no such request to you.")
    if form.get("back") == "1":
        return await _request_answer(request, view, record, where)
    key = text_field(form, "key", 64)
    if form.get("confirm") != "1" or not _KEY.fullmatch(key):
        return await _request_answer(request, view, record, where, confirm="pay")
    try:
        await check_payable(request, record.payee_uri)
        if not record.is_ours:
            await know_node(request, record.settlement_node)
    except ApiError as exc:
        return await _request_answer(request, view, record, where, 422, error=exc.error)
    transfer_uri = view.payments.transfer_uri(me, f"web:{key}")

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        current = await requests.request_by_uri(conn, record.uri, lock=True)
        assert current is not None
        return await view.payments.pay(conn, me, current, transfer_uri, now)

    try:
        paid = await request.app[FEDERATION].perform(act)
    except PaymentError as exc:
        return await _request_answer(request, view, record, where, 422, error=str(exc))
    if not is_partial(request):
        return see_other(f"/wallet/transfers/{paid.id}")
    return await _request_answer(request, view, record, where, paid=paid)


@routes.post("/wallet/requests/{id}/decline")
@page
async def decline(request: web.Request) -> web.Response:
    """Say no to a request: first the confirmation, then the payee's server hears of it."""
    me = await require_viewer(request)
    form = await read_form(request)
    view, where = WalletView(request, me), _view_of(form)
    record = await _my_request(request, me)
    if record.payer_account_id != me.id:
        raise ApiError(404, "Not found", "There is no such request to you.")
    if form.get("back") == "1":
        return await _request_answer(request, view, record, where)
    if form.get("confirm") != "1":
        return await _request_answer(request, view, record, where, confirm="decline")
    try:
        await request.app[FEDERATION].perform(
            lambda conn, now: view.payments.decline(conn, me, record, now)
        )
    except PaymentError as exc:
        return await _request_answer(request, view, record, where, 422, error=str(exc))
    if not is_partial(request):
        return see_other(f"/wallet/requests/{record.id}")
    return await _request_answer(request, view, record, where)


@routes.post("/wallet/requests/{id}/cancel")
@page
async def cancel(request: web.Request) -> web.Response:
    """The payee takes back an open request."""
    me = await require_viewer(request)
    form = await read_form(request)
    view, where = WalletView(request, me), _view_of(form)
    record = await _my_request(request, me)

    async def act(conn: AsyncConnection, now: datetime) -> list:
        await view.payments.cancel(conn, me, record, now)
        return []

    try:
        await request.app[FEDERATION].perform(act)
    except PaymentError as exc:
        return await _request_answer(request, view, record, where, 422, error=str(exc))
    if not is_partial(request):
        return see_other(f"/wallet/requests/{record.id}")
    return await _request_answer(request, view, record, where)


def _view_of(form: MultiDictProxy[Any]) -> str:
    where = form.get("view")
    return where if isinstance(where, str) and where in VIEWS else "wallet"


async def _request_answer(
    request: web.Request,
    view: WalletView,
    record: RequestRecord,
    where: str,
    status: int = 200,
    confirm: str | None = None,
    error: str | None = None,
    paid: SettlementRecord | None = None,
) -> web.Response:
    """The request as it stands now, in place (a fragment), on its own page, or, for a
    confirmation without the script, on a page that asks."""
    async with request.app[DATABASE].read() as conn:
        current = await requests.request_by_id(conn, record.id)
        assert current is not None
        item = await view.request_item(conn, current)
        lines = await view.balances(conn)
        sent = await view.transfer_item(conn, paid) if paid is not None else None
    item.update(confirm=confirm, problem=_sentence(error) if error else None)
    if confirm == "pay":
        item["key"] = secrets.token_urlsafe(24)
    values = {"viewer": view.me, "view": view, "item": item, "where": where}
    if is_partial(request):
        parts = [] if where == "receipt" else ["request", "balances"]
        insert = None
        if where == "wallet":
            outgoing = item["direction"] == "outgoing"
            insert = "my-requests" if outgoing else "waiting" if item["is_open"] else None
        return await render_fragment(
            request, "web/wallet_fragment.html", status, parts=parts + (["paid"] if sent else []),
            balances=lines, paid=sent, insert=insert, **values,
        )  # fmt: skip
    if confirm is not None or error:
        return await render(request, "web/wallet_confirm.html", status, **values)
    return await render(request, "web/wallet_request.html", status, **values)


# --- money waiting for the user ---------------------------------------------------------------


@routes.post("/wallet/transfers/{id}/accept")
@page
async def accept_transfer(request: web.Request) -> web.Response:
    """Take money sent to the user that waits for them."""
    return await _answer_transfer(request, take=True)


@routes.post("/wallet/transfers/{id}/decline")
@page
async def decline_transfer(request: web.Request) -> web.Response:
    """Send money waiting for the user back to its sender."""
    return await _answer_transfer(request, take=False)


async def _answer_transfer(request: web.Request, take: bool) -> web.Response:
    me = await require_viewer(request)
    form = await read_form(request)
    view = WalletView(request, me)
    record = await _my_transfer(request, me)
    error = None
    try:
        await request.app[FEDERATION].perform(
            lambda conn, now: view.payments.answer_transfer(conn, me, record, take, now)
        )
    except PaymentError as exc:
        error = _sentence(str(exc))
    if not is_partial(request):
        if error:
            raise ApiError(422, "This payment cannot be answered", error)
        return see_other(f"/wallet/transfers/{record.id}")
    where = _view_of(form)
    return await _transfer_answer(request, view, record.id, where, 422 if error else 200, error)


async def _my_transfer(request: web.Request, me: Account) -> SettlementRecord:
    async with request.app[DATABASE].read() as conn:
        record = await settlement.settlement_by_id(conn, _id(request))
    if record is None or me.id not in (record.payer_account_id, record.payee_account_id):
        raise ApiError(404, "Not found", "There is no such payment.")
    return record


async def _transfer_answer(
    request: web.Request,
    view: WalletView,
    transfer_id: int,
    where: str,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    """A transfer as it stands now, as a fragment (with the balances)."""
    async with request.app[DATABASE].read() as conn:
        record = await settlement.settlement_by_id(conn, transfer_id)
        assert record is not None
        item = await view.transfer_item(conn, record)
        lines = await view.balances(conn)
    item["problem"] = error
    values: dict[str, Any] = {"item": item, "balances": lines, "kind": "transfer"}
    if where == "receipt":
        values.update(parts=["receipt"], receipt=await _verification(request, view, record))
    elif where == "request":
        values.update(parts=[])  # the request's own events change that page
    else:
        insert = "waiting" if item["awaits_me"] else "recent"
        values.update(parts=["balances", "item"], insert=insert)
    return await render_fragment(
        request, "web/wallet_fragment.html", status, viewer=view.me, view=view, **values
    )


# --- receipts ---------------------------------------------------------------------------------


@routes.get("/wallet/transfers/{id}")
@page
async def receipt(request: web.Request) -> web.Response:
    """Who paid whom, when, how much, and whether the signed documents prove it."""
    me = await require_viewer(request)
    view = WalletView(request, me)
    record = await _my_transfer(request, me)
    async with request.app[DATABASE].read() as conn:
        item = await view.transfer_item(conn, record)
    return await render(
        request,
        "web/receipt.html",
        viewer=me,
        view=view,
        item=item,
        receipt=await _verification(request, view, record),
    )


async def _verification(
    request: web.Request, view: WalletView, record: SettlementRecord
) -> dict[str, Any] | None:
    """The receipt's documents and what their signatures prove (checked now, with the keys
    the parties publish), for a completed payment; None before that."""
    entity = transfer_entity(record, view.me.id, view.payments.currencies)
    if entity["state"] != "completed":
        return None
    paid = None
    if record.request_uri:
        async with request.app[DATABASE].read() as conn:
            paid = await requests.request_by_uri(conn, record.request_uri)
    return await receipt_of(view.payments, record, paid)


# --- history ----------------------------------------------------------------------------------


@routes.get("/wallet/history")
@page
async def history(request: web.Request) -> web.Response:
    """Every payment, newest first, filtered by direction, state and currency."""
    me = await require_viewer(request)
    view = WalletView(request, me)
    errors = FormErrors()
    filters = _filters(request, errors)
    raw = request.query.get("max_id", "")
    max_id = int(raw) if _ID.fullmatch(raw) else None
    async with request.app[DATABASE].read() as conn:
        lines = await view.balances(conn)
        found = await view.history(conn, filters, HISTORY_PAGE, max_id) if not errors else []
    more = None
    if len(found) == HISTORY_PAGE:
        query = {k: v for k, v in request.query.items() if k != "max_id"}
        query["max_id"] = str(found[-1]["record"].id)
        more = str(request.rel_url.with_query(query))
    query = {k: v for k, v in request.query.items() if k != "max_id"}
    return await render(
        request,
        "web/wallet_history.html",
        422 if errors else 200,
        viewer=me,
        view=view,
        payments=found,
        more=more,
        filters=filters,
        errors=errors,
        currencies=sorted({line.currency for line in lines} | {filters.currency or "EUR"}),
        csv_link=str(request.rel_url.with_path("/wallet/history.csv").with_query(query)),
    )


def _filters(request: web.Request, errors: FormErrors) -> HistoryFilter:
    values = [request.query.get(name, "")[:20] for name in ("direction", "state", "currency")]
    try:
        return HistoryFilter.of(*values)
    except ValueError as exc:
        errors[""] = _sentence(str(exc))
        return HistoryFilter()


@routes.get("/wallet/history.csv")
@page
async def history_csv(request: web.Request) -> web.Response:
    """The filtered history as a spreadsheet (the payments API's CSV)."""
    me = await require_viewer(request)
    errors = FormErrors()
    filters = _filters(request, errors)
    if errors:
        raise ApiError(422, "These filters cannot be used", errors[""])
    view = WalletView(request, me)
    async with request.app[DATABASE].read() as conn:
        found = await view.history(conn, filters, CSV_ROWS_MAX)
    entities = [{k: v for k, v in item.items() if k != "record"} for item in found]
    return transactions_csv(entities)


# --- live fragments ---------------------------------------------------------------------------

# A mark is this much older than the moment it stands for: a row named by an id from just
# before it may commit just after it, and answering a payment twice costs only a fetch.
CHANGES_MARGIN = timedelta(seconds=10)


def _changes_mark(request: web.Request) -> int:
    return first_id_after(request.app[CLOCK]() - CHANGES_MARGIN)


@routes.get("/wallet/changes")
async def changes(request: web.Request) -> web.Response:
    """What kith.js asks whenever the wallet page's stream (re)connects: the payment requests
    and transfers stored since the page's mark (`since`), which it may not have heard of
    (they came while it was not listening), and the mark to ask from next time."""
    me = await require_viewer(request)
    since = request.query.get("since", "")
    if not _ID.fullmatch(since):
        raise ApiError(422, "Validation failed", "since must be a mark the page was given")
    mark = _changes_mark(request)
    async with request.app[DATABASE].read() as conn:
        found = await changes_since(conn, me, int(since))
    answer = json_body(
        {
            "payment_requests": [str(i) for i in found.request_ids],
            "transfers": [str(i) for i in found.transfer_ids],
            "since": str(max(mark, int(since))),
        }
    )
    answer.headers["Cache-Control"] = "no-store"
    return answer


@routes.get("/wallet/live")
@page
async def live(request: web.Request) -> web.Response:
    """What kith.js swaps in when the stream says a payment changed: the payment as the page
    (`view`) shows it, and the balances."""
    me = await require_viewer(request)
    view = WalletView(request, me)
    where = request.query.get("view", "wallet")
    where = where if where in VIEWS else "wallet"
    transfer, asked = request.query.get("transfer", ""), request.query.get("payment", "")
    if _ID.fullmatch(transfer):
        async with request.app[DATABASE].read() as conn:
            record = await settlement.settlement_by_id(conn, int(transfer))
        if record is None or me.id not in (record.payer_account_id, record.payee_account_id):
            raise ApiError(404, "Not found", "There is no such payment.")
        return await _transfer_answer(request, view, record.id, where)
    if _ID.fullmatch(asked):
        async with request.app[DATABASE].read() as conn:
            found = await requests.request_by_id(conn, int(asked))
        if found is None or me.id not in (found.payee_account_id, found.payer_account_id):
            raise ApiError(404, "Not found", "There is no such payment request.")
        return await _request_answer(request, view, found, where)
    raise ApiError(404, "Not found", "Name a payment or a transfer.")
