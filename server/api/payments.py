"""The Kith payments API (`/api/kith/v1/`): wallet, payment requests, transfers, receipts.

Amounts are decimal strings with a currency code, never JSON numbers. Paying and sending take
an `Idempotency-Key` header (as Stripe's API does): the same key names the same transfer, so a
client that lost the answer can safely ask again.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from payments import receipts, requests, settlement
from payments.money import AmountError, Currencies, format_amount
from payments.parties import PaymentError
from payments.requests import MAXIMUM_EXPIRY, MINIMUM_EXPIRY, RequestRecord, RequestState
from payments.settlement import SettlementRecord
from payments.tables import payment_requests, settlements
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import mastodon_time
from server.api.pagination import page_request, paginated
from server.api.params import integer, path_id, request_params, required, string
from server.api.responses import json_body
from server.appkeys import CLOCK, DATABASE, FEDERATION
from server.identity.accounts import Account
from server.paying import PayeeNode, Payments
from server.social import chats
from server.social.chats import Chat, ChatError
from server.social.remote_accounts import account_for_actor
from server.wallets import balances

routes = web.RouteTableDef()
PREFIX = "/api/kith/v1"
NOTE_LENGTH_MAX = 640
_TRANSFER_STATES = {
    "prepared": "pending",
    "posted": "completed",
    "accepted": "completed",
    "voided": "rejected",
    "rejected": "rejected",
    "held": "awaiting_acceptance",  # the payee has until accept_by to take it
}


def _payments(request: web.Request) -> Payments:
    return request.app[FEDERATION].payments


# --- wallet ------------------------------------------------------------------------------


@routes.get(f"{PREFIX}/wallet")
async def get_wallet(request: web.Request) -> web.Response:
    """The user's balances per currency: what they hold, may spend, and have coming in."""
    me = await require_account(request, "read:payments")
    currencies = _payments(request).currencies
    async with request.app[DATABASE].read() as conn:
        found = await balances(conn, me)
    return json_body(
        {
            "balances": [
                {
                    "currency": b.currency,
                    "balance": format_amount(b.balance, currencies.get(b.currency)),
                    "available": format_amount(b.available, currencies.get(b.currency)),
                    "pending": format_amount(b.balance - b.available, currencies.get(b.currency)),
                    # Sent to the user, waiting for them to accept it.
                    "incoming": format_amount(b.incoming, currencies.get(b.currency)),
                }
                for b in found
            ]
        }
    )


@routes.get(f"{PREFIX}/wallet/transactions")
async def get_transactions(request: web.Request) -> web.StreamResponse:
    """The user's payments, newest first (`direction`, `state`, `currency` filter them);
    `?format=csv` downloads them as a spreadsheet."""
    me = await require_account(request, "read:payments")
    params = await request_params(request)
    page = page_request(params, default=40, most=200 if params.get("format") == "csv" else 80)
    try:
        filters = HistoryFilter.of(
            string(params, "direction", None, 10),
            string(params, "state", None, 20),
            string(params, "currency", None, 12),
        )
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    query = history_query(me, filters, page.limit, page.max_id, page.min_id or page.since_id)
    async with request.app[DATABASE].read() as conn:
        rows = [settlement.settlement_from_row(row) for row in await conn.execute(query)]
    entities = [_transfer_entity(request, record, me) for record in rows]
    if params.get("format") == "csv":
        return transactions_csv(entities)
    return paginated(request, entities)


@dataclass(frozen=True)
class HistoryFilter:
    """Which of a user's payments to list: `incoming`/`outgoing`, a state as the API names
    it (pending, completed, rejected, awaiting_acceptance), a currency; None for any."""

    direction: str | None = None
    state: str | None = None
    currency: str | None = None

    @classmethod
    def of(cls, direction: str | None, state: str | None, currency: str | None) -> HistoryFilter:
        """The filter from a client's values ('' is any); ValueError says what is wrong."""
        if direction not in (None, "", "incoming", "outgoing"):
            raise ValueError("direction is incoming or outgoing")
        if state not in (None, "", *_TRANSFER_STATES.values()):
            raise ValueError(
                f"state is one of {', '.join(dict.fromkeys(_TRANSFER_STATES.values()))}"
            )
        code = (currency or "").strip().upper()
        if code and not code.isalnum():
            raise ValueError("currency is a currency code such as EUR")
        return cls(direction or None, state or None, code or None)


def history_query(
    me: Account,
    filters: HistoryFilter,
    limit: int,
    max_id: int | None = None,
    min_id: int | None = None,
) -> Select:
    """The user's payments (settlements) matching `filters`, newest first."""
    incoming = settlements.c.payee_account_id == me.id
    outgoing = settlements.c.payer_account_id == me.id
    mine = {"incoming": incoming, "outgoing": outgoing, None: or_(incoming, outgoing)}
    query = select(settlements).where(mine[filters.direction])
    if filters.state is not None:
        states = [name for name, shown in _TRANSFER_STATES.items() if shown == filters.state]
        query = query.where(settlements.c.state.in_(states))
    if filters.currency is not None:
        query = query.where(settlements.c.currency == filters.currency)
    if max_id is not None:
        query = query.where(settlements.c.id < max_id)
    if min_id is not None:
        query = query.where(settlements.c.id > min_id)
    return query.order_by(settlements.c.id.desc()).limit(limit)


def transactions_csv(
    entities: list[dict[str, Any]], filename: str = "kith-wallet.csv"
) -> web.Response:
    """Payments (as the API shows them) as a CSV download."""
    return web.Response(
        text=transactions_csv_text(entities),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def transactions_csv_text(entities: list[dict[str, Any]]) -> str:
    """Payments (as the API shows them) as CSV text, safe to open in a spreadsheet."""
    out = io.StringIO()
    columns = ["id", "created_at", "decided_at", "direction", "state", "amount", "currency"]
    columns += ["payer", "payee", "payment_request", "uri"]
    writer = csv.DictWriter(out, columns, extrasaction="ignore")
    writer.writeheader()
    for entity in entities:
        writer.writerow({key: _csv_cell(entity.get(key)) for key in columns})
    return out.getvalue()


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula to spreadsheets (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# --- payment requests --------------------------------------------------------------------


@routes.post(f"{PREFIX}/payment_requests")
async def create_payment_request(request: web.Request) -> web.Response:
    """Ask someone (`payer`: @user@host or an actor URL) for an amount; with `chat_id`, in
    that chat (the payer defaults to the other person of a one-to-one chat)."""
    me = await require_account(request, "write:payments")
    params = await request_params(request)
    payments = _payments(request)
    amount = _amount(payments, params)
    note = string(params, "note", "", max_length=NOTE_LENGTH_MAX) or ""
    lifetime = _lifetime(params)
    chat = await _chat_of(request, me, params)
    payer = await _counterparty(request, me, chat, params, "payer")
    if payer.id == me.id:
        raise ApiError(422, "you cannot request money from yourself")

    try:
        by_kith = await payments.kith_node_of(payer) is not None
    except ActorUnavailable:
        raise _unreachable() from None

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        if chat is None:
            return await payments.create_request(
                conn, me, payer, amount, note, lifetime, now, payer_takes_kith_payments=by_kith
            )
        return await payments.request_in_chat(
            conn, me, payer, chat, amount, note, lifetime, now, payer_takes_kith_payments=by_kith
        )

    record = await _perform(request, act)
    return json_body(_request_entity(request, record, me), status=201)


@routes.get(f"{PREFIX}/payment_requests")
async def list_payment_requests(request: web.Request) -> web.Response:
    """Requests to or from the user: `direction=incoming|outgoing`, `state=open|paid|…`."""
    me = await require_account(request, "read:payments")
    params = await request_params(request)
    page = page_request(params, default=20, most=80)
    direction = string(params, "direction", None, 10)
    state = string(params, "state", None, 10)
    if direction not in (None, "incoming", "outgoing"):
        raise ApiError(422, "direction is incoming or outgoing")
    if state is not None and state not in RequestState.__members__.values():
        raise ApiError(422, f"state is one of {', '.join(RequestState)}")
    incoming = payment_requests.c.payer_account_id == me.id
    outgoing = payment_requests.c.payee_account_id == me.id
    mine = {"incoming": incoming, "outgoing": outgoing, None: or_(incoming, outgoing)}[direction]
    query = select(payment_requests).where(mine)
    if page.max_id is not None:
        query = query.where(payment_requests.c.id < page.max_id)
    if page.min_id is not None or page.since_id is not None:
        query = query.where(payment_requests.c.id > (page.min_id or page.since_id))
    async with request.app[DATABASE].read() as conn:
        rows = await conn.execute(query.order_by(payment_requests.c.id.desc()).limit(page.limit))
        records = [requests.request_from_row(row) for row in rows]
    now = request.app[CLOCK]()
    if state is not None:  # expiry is decided on read: filter after it
        records = [r for r in records if r.state(now).value == state]
    return paginated(request, [_request_entity(request, r, me) for r in records])


@routes.get(f"{PREFIX}/payment_requests/{{id}}")
async def get_payment_request(request: web.Request) -> web.Response:
    me = await require_account(request, "read:payments")
    record = await _my_request(request, me)
    return json_body(_request_entity(request, record, me))


@routes.post(f"{PREFIX}/payment_requests/{{id}}/pay")
async def pay_payment_request(request: web.Request) -> web.Response:
    """Pay a request made to the user (Idempotency-Key names the payment)."""
    me = await require_account(request, "write:payments")
    record = await _my_request(request, me)
    payments = _payments(request)
    await check_payable(request, record.payee_uri)
    transfer_uri = payments.transfer_uri(me, _idempotency_key(request))
    if not record.is_ours:
        await know_node(request, record.settlement_node)

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        current = await requests.request_by_uri(conn, record.uri, lock=True)
        assert current is not None
        return await payments.pay(conn, me, current, transfer_uri, now)

    paid = await _perform(request, act)
    entity = _transfer_entity(request, paid, me)
    return json_body(entity, status=200 if entity["state"] == "completed" else 202)


@routes.post(f"{PREFIX}/payment_requests/{{id}}/decline")
async def decline_payment_request(request: web.Request) -> web.Response:
    me = await require_account(request, "write:payments")
    record = await _my_request(request, me)
    payments = _payments(request)
    await _perform(request, lambda conn, now: payments.decline(conn, me, record, now))
    return json_body(_request_entity(request, await _reload(request, record), me))


@routes.post(f"{PREFIX}/payment_requests/{{id}}/cancel")
async def cancel_payment_request(request: web.Request) -> web.Response:
    me = await require_account(request, "write:payments")
    record = await _my_request(request, me)
    payments = _payments(request)

    async def act(conn: AsyncConnection, now: datetime) -> list:
        await payments.cancel(conn, me, record, now)
        return []

    await _perform(request, act)
    return json_body(_request_entity(request, await _reload(request, record), me))


async def _my_request(request: web.Request, me: Account) -> RequestRecord:
    async with request.app[DATABASE].read() as conn:
        record = await requests.request_by_id(conn, path_id(request))
    if record is None or me.id not in (record.payee_account_id, record.payer_account_id):
        raise ApiError(404, "Record not found")
    return record


async def _reload(request: web.Request, record: RequestRecord) -> RequestRecord:
    async with request.app[DATABASE].read() as conn:
        found = await requests.request_by_id(conn, record.id)
    assert found is not None
    return found


# --- transfers ---------------------------------------------------------------------------


@routes.post(f"{PREFIX}/transfers")
async def send_transfer(request: web.Request) -> web.Response:
    """Send money to someone (`to`: @user@host or an actor URL) without a request; with
    `chat_id`, in that chat (`to` defaults to the other person of a one-to-one chat)."""
    me = await require_account(request, "write:payments")
    params = await request_params(request)
    payments = _payments(request)
    amount = _amount(payments, params)
    note = string(params, "note", "", max_length=NOTE_LENGTH_MAX) or ""
    chat = await _chat_of(request, me, params)
    payee = await _counterparty(request, me, chat, params, "to")
    if payee.id == me.id:
        raise ApiError(422, "you cannot send money to yourself")
    await check_payable(request, payee.uri or request.app[FEDERATION].urls.actor(payee))
    transfer_uri = payments.transfer_uri(me, _idempotency_key(request))
    try:
        node = await payments.payee_node(payee)
    except PaymentError as exc:
        raise ApiError(422, str(exc)) from None
    except ActorUnavailable:
        raise _unreachable() from None

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        payee_node = PayeeNode(node, payee)
        if chat is None:
            return await payments.send(conn, me, payee_node, amount, transfer_uri, now)
        return await payments.send_in_chat(
            conn, me, payee_node, chat, amount, transfer_uri, note, now
        )

    sent = await _perform(request, act)
    entity = _transfer_entity(request, sent, me)
    return json_body(entity, status=200 if entity["state"] == "completed" else 202)


# --- payments in a chat ----------------------------------------------------------------------


async def _chat_of(request: web.Request, me: Account, params: dict[str, Any]) -> Chat | None:
    chat_id = integer(params, "chat_id")
    if chat_id is None:
        return None
    async with request.app[DATABASE].read() as conn:
        try:
            return await chats.chat_of_member(conn, me, chat_id)
        except ChatError as exc:
            raise ApiError(exc.status, str(exc)) from None


async def _counterparty(
    request: web.Request, me: Account, chat: Chat | None, params: dict[str, Any], name: str
) -> Account:
    """Who pays or is paid: named, or the other person of a one-to-one chat. In a chat, they
    must be one of its members."""
    if chat is None:
        return await resolve_party(request, required(params, name, 2048))
    async with request.app[DATABASE].read() as conn:
        others = [
            m.account
            for m in await chats.members_of(conn, chat.id)
            if m.active and m.account.id != me.id
        ]
    if params.get(name) is None:
        if len(others) != 1:
            raise ApiError(422, f"name the {name} (this chat has several other members)")
        return others[0]
    named = await resolve_party(request, required(params, name, 2048))
    if named.id not in {o.id for o in others}:
        raise ApiError(422, f"the {name} is not in this chat")
    return named


@routes.post(f"{PREFIX}/transfers/{{id}}/accept")
async def accept_transfer(request: web.Request) -> web.Response:
    """Take money sent to the user that waits for them (awaiting_acceptance)."""
    return await _answer_transfer(request, take=True)


@routes.post(f"{PREFIX}/transfers/{{id}}/decline")
async def decline_transfer(request: web.Request) -> web.Response:
    """Send money waiting for the user back to its sender."""
    return await _answer_transfer(request, take=False)


async def _answer_transfer(request: web.Request, take: bool) -> web.Response:
    me = await require_account(request, "write:payments")
    transfer_id = path_id(request)
    payments = _payments(request)

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        record = await settlement.settlement_by_id(conn, transfer_id)
        if record is None or me.id not in (record.payer_account_id, record.payee_account_id):
            raise ApiError(404, "Record not found")
        return await payments.answer_transfer(conn, me, record, take, now)

    answered = await _perform(request, act)
    return json_body(_transfer_entity(request, answered, me))


@routes.get(f"{PREFIX}/transfers/{{id}}")
async def get_transfer(request: web.Request) -> web.Response:
    """A transfer's state and, once decided, its receipt with the signatures checked."""
    me = await require_account(request, "read:payments")
    async with request.app[DATABASE].read() as conn:
        record = await settlement.settlement_by_id(conn, path_id(request))
        if record is None or me.id not in (record.payer_account_id, record.payee_account_id):
            raise ApiError(404, "Record not found")
        paid_request = (
            await requests.request_by_uri(conn, record.request_uri) if record.request_uri else None
        )
    entity = _transfer_entity(request, record, me)
    if record.decision is not None:
        entity["receipt"] = await receipt_of(_payments(request), record, paid_request)
    return json_body(entity)


async def receipt_of(
    payments: Payments, record: SettlementRecord, paid: RequestRecord | None
) -> dict[str, Any]:
    """The signed request, transfer and decision, and whether they prove the payment (their
    signatures checked against the keys the parties publish now)."""
    signers = {record.payer_uri, record.payee_uri, record.transfer.get("payer", "")}
    node = await payments.node_key()
    keys = {node.key_id: receipts.public_key(node.seed)}
    for uri in sorted(signers | {_node_of(record.payer_uri), _node_of(record.payee_uri)}):
        keys.update(await payments.published_keys(uri))
    problems = receipts.check(
        paid.document if paid else None, record.transfer, record.decision, keys
    )
    return {
        "payment_request": paid.document if paid else None,
        "transfer": record.transfer,
        "decision": record.decision,
        "verified": not problems,
        "problems": problems,
    }


def _node_of(actor_uri: str) -> str:
    scheme, _, rest = actor_uri.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/actor"


# --- shared ------------------------------------------------------------------------------


def _amount(payments: Payments, params: dict[str, Any]) -> Any:
    amount, currency = params.get("amount"), params.get("currency")
    if isinstance(amount, int | float) and not isinstance(amount, bool):
        raise ApiError(422, 'amount must be a decimal string such as "12.50", not a number')
    try:
        return payments.amount(amount, currency)
    except AmountError as exc:
        raise ApiError(422, str(exc)) from None


def _lifetime(params: dict[str, Any]) -> timedelta | None:
    low, high = int(MINIMUM_EXPIRY.total_seconds()), int(MAXIMUM_EXPIRY.total_seconds())
    seconds = integer(params, "expires_in", None, low=low, high=high)
    return None if seconds is None else timedelta(seconds=seconds)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ApiError(422, "Idempotency-Key must be 1 to 200 characters")
    return key


async def resolve_party(request: web.Request, handle: str) -> Account:
    federation = request.app[FEDERATION]
    try:
        if handle.startswith(("https://", "http://")):
            found = await federation.resolve_url(handle)
            if not isinstance(found, Account):
                raise LookupError(handle)
            return found
        return await federation.resolve_account(handle)
    except (LookupError, ActorUnavailable, FetchError):
        raise ApiError(422, f"no account {handle} could be found") from None


async def check_payable(request: web.Request, payee_uri: str) -> None:
    """Moderation stops payments to suspended accounts and to suspended domains (422)."""
    federation = request.app[FEDERATION]
    if federation.domains.refuses(payee_uri):
        raise ApiError(422, "payments to that server are stopped by this server's moderators")
    async with request.app[DATABASE].read() as conn:
        payee = await account_for_actor(conn, payee_uri, federation.urls.base_url)
    if payee is not None and payee.is_suspended:
        raise ApiError(422, "that account is suspended and cannot be paid")


async def know_node(request: web.Request, node_uri: str) -> None:
    """The payee's node is known (stored with its inbox) before an offer is queued for it."""
    try:
        await request.app[FEDERATION].directory.get(node_uri)
    except ActorUnavailable:
        raise _unreachable() from None


def _unreachable() -> ApiError:
    return ApiError(503, "that person's server cannot be reached; try again later")


async def _perform(request: web.Request, action: Any) -> Any:
    try:
        return await request.app[FEDERATION].perform(action)
    except PaymentError as exc:
        raise ApiError(422, str(exc)) from None


def request_entity(
    record: RequestRecord, viewer_id: int, currencies: Currencies, now: datetime
) -> dict[str, Any]:
    """A payment request as the API shows it to the payee or the payer."""
    return {
        "id": str(record.id),
        "uri": record.uri,
        "direction": "outgoing" if record.payee_account_id == viewer_id else "incoming",
        "state": record.state(now).value,
        "payee": record.payee_uri,
        "payer": record.payer_uri,
        "amount": format_amount(record.amount, currencies.get(record.currency)),
        "currency": record.currency,
        "note": record.summary,
        "created_at": mastodon_time(record.created_at),
        "expires_at": mastodon_time(record.expires_at),
        "paid_by": record.paid_by,
    }


def transfer_entity(
    record: SettlementRecord, viewer_id: int, currencies: Currencies
) -> dict[str, Any]:
    """A transfer as the API shows it to its payer or payee (without the receipt)."""
    return {
        "id": str(record.id),
        "uri": record.uri,
        "direction": "outgoing" if record.payer_account_id == viewer_id else "incoming",
        "state": _TRANSFER_STATES[record.state.value],
        "amount": format_amount(record.amount, currencies.get(record.currency)),
        "currency": record.currency,
        "payer": record.payer_uri,
        "payee": record.payee_uri,
        "payment_request": record.request_uri,
        "error": {"code": record.code, "reason": record.reason} if record.code else None,
        "created_at": mastodon_time(record.created_at),
        "decided_at": mastodon_time(record.decided_at) if record.decided_at else None,
        "accept_by": mastodon_time(record.expires_at) if record.state.value == "held" else None,
    }


async def chat_payment_entity(
    conn: AsyncConnection, uri: str, viewer: Account, currencies: Currencies, now: datetime
) -> dict[str, Any]:
    """The payment a chat message is about, live, for its payer or payee; others (and nodes
    that do not hold it) see only what it is."""
    request = await requests.request_by_uri(conn, uri)
    if request is not None and viewer.id in (request.payee_account_id, request.payer_account_id):
        return {"type": "payment_request", **request_entity(request, viewer.id, currencies, now)}
    transfer = await settlement.settlement_by_uri(conn, uri)
    if transfer is not None and viewer.id in (
        transfer.payer_account_id,
        transfer.payee_account_id,
    ):
        return {"type": "transfer", **transfer_entity(transfer, viewer.id, currencies)}
    kind = "payment_request" if request is not None or "/requests/" in uri else "transfer"
    return {"type": kind, "uri": uri}


def _request_entity(request: web.Request, record: RequestRecord, me: Account) -> dict[str, Any]:
    return request_entity(record, me.id, _payments(request).currencies, request.app[CLOCK]())


def _transfer_entity(request: web.Request, record: SettlementRecord, me: Account) -> dict[str, Any]:
    return transfer_entity(record, me.id, _payments(request).currencies)
