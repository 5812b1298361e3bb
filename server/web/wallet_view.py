"""What the wallet pages show of payments: the payments API's entities (the same states and
directions), with the other person by name and every amount in the reader's number style."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from payments import requests, settlement
from payments.money import AmountError, Currency
from payments.requests import RequestRecord, RequestState
from payments.settlement import SettlementRecord, SettlementState
from payments.tables import payment_requests, settlements
from protocol.as2 import host_of
from server.api.payments import HistoryFilter, history_query, request_entity, transfer_entity
from server.appkeys import CLOCK, FEDERATION, URLS
from server.identity.accounts import Account
from server.paying import Payments
from server.social.remote_accounts import account_for_actor
from server.wallets import balances
from server.web.money import NumberStyle, format_money, number_style

RECENT = 10  # payments and requests on the wallet's front page
WAITING_MAX = 50  # requests and transfers waiting for the user's answer


@dataclass(frozen=True)
class Person:
    """Someone on the other side of a payment, as the page names them."""

    name: str
    handle: str
    href: str | None  # their profile page here, when this node knows them


@dataclass(frozen=True)
class BalanceLine:
    currency: str
    balance: str
    available: str
    pending: str  # reserved by payments under way
    incoming: str  # sent to the user, waiting for them to accept it
    has_pending: bool
    has_incoming: bool


class WalletView:
    """One request's view of the user's payments: their number style, the clock, names."""

    def __init__(self, request: web.Request, me: Account) -> None:
        self.me = me
        self.payments: Payments = request.app[FEDERATION].payments
        self.urls = request.app[URLS]
        self.now: datetime = request.app[CLOCK]()
        self.style: NumberStyle = number_style(request.headers.get("Accept-Language"))
        self._people: dict[str, Person] = {}

    def currency(self, code: str) -> Currency:
        try:
            return self.payments.currencies.get(code)
        except AmountError:
            return Currency(code, 2)  # a currency the operator no longer configures

    def money(self, minor: int, code: str) -> str:
        """`1.234,50 EUR` for a German reader."""
        return format_money(minor, self.currency(code), self.style)

    async def person(self, conn: AsyncConnection, uri: str | None) -> Person:
        """The account an actor id names, by name; an unknown one by its address."""
        if not uri:
            return Person("anyone with the link", "", None)
        if uri not in self._people:
            account = await account_for_actor(conn, uri, self.urls.base_url)
            if account is None:
                name = uri.rstrip("/").rpartition("/")[2] or uri
                self._people[uri] = Person(name, f"{name}@{host_of(uri)}", None)
            else:
                self._people[uri] = Person(
                    account.display_name or account.username,
                    self.urls.handle(account),
                    f"/@{account.acct}",
                )
        return self._people[uri]

    async def balances(self, conn: AsyncConnection) -> list[BalanceLine]:
        lines = []
        for found in await balances(conn, self.me):
            pending = found.balance - found.available
            lines.append(
                BalanceLine(
                    currency=found.currency,
                    balance=self.money(found.balance, found.currency),
                    available=self.money(found.available, found.currency),
                    pending=self.money(pending, found.currency),
                    incoming=self.money(found.incoming, found.currency),
                    has_pending=pending != 0,
                    has_incoming=found.incoming != 0,
                )
            )
        return lines

    async def request_item(self, conn: AsyncConnection, record: RequestRecord) -> dict[str, Any]:
        """A payment request as the API shows it, and what the page needs besides."""
        entity = request_entity(record, self.me.id, self.payments.currencies, self.now)
        outgoing = entity["direction"] == "outgoing"
        paid_by = None
        if record.paid_by:
            paid_by = await settlement.settlement_by_uri(conn, record.paid_by)
        elif not outgoing and entity["state"] == RequestState.OPEN.value:
            paid_by = await self._payment_under_way(conn, record.uri)
        return {
            **entity,
            "kind": "request",
            "record": record,
            "shown_amount": self.money(record.amount, record.currency),
            "other": await self.person(conn, record.payer_uri if outgoing else record.payee_uri),
            "is_open": entity["state"] == RequestState.OPEN.value,
            # The user paid it and the payee's server has not answered yet.
            "under_way": paid_by is not None and paid_by.state is SettlementState.PREPARED,
            "link": record.uri if record.is_ours else None,
            "receipt_id": paid_by.id if paid_by is not None else None,
            "problem": None,  # what went wrong with the user's action on it
            "confirm": None,  # the step asked for: "pay" or "decline"
            "key": None,  # the payment's key in the "pay" step
        }

    async def _payment_under_way(
        self, conn: AsyncConnection, request_uri: str
    ) -> SettlementRecord | None:
        row = (
            await conn.execute(
                select(settlements)
                .where(
                    settlements.c.request_uri == request_uri,
                    settlements.c.payer_account_id == self.me.id,
                    settlements.c.state == SettlementState.PREPARED.value,
                )
                .limit(1)
            )
        ).first()
        return settlement.settlement_from_row(row) if row else None

    async def transfer_item(
        self, conn: AsyncConnection, record: SettlementRecord
    ) -> dict[str, Any]:
        """A transfer as the API shows it, and what the page needs besides."""
        entity = transfer_entity(record, self.me.id, self.payments.currencies)
        outgoing = entity["direction"] == "outgoing"
        paid = None
        if record.request_uri:
            paid = await requests.request_by_uri(conn, record.request_uri)
        payer = await self.person(conn, record.payer_uri)
        payee = await self.person(conn, record.payee_uri)
        return {
            **entity,
            "kind": "transfer",
            "record": record,
            "shown_amount": self.money(record.amount, record.currency),
            "payer": payer,
            "payee": payee,
            "other": payee if outgoing else payer,
            "note": paid.summary if paid is not None else "",
            "request_id": paid.id if paid is not None else None,
            "problem": None,
            "awaits_me": record.state is SettlementState.HELD and not outgoing,
        }

    async def waiting(self, conn: AsyncConnection) -> list[dict[str, Any]]:
        """What waits for the user's answer: open requests to them, money waiting for them
        to accept it; newest first."""
        asked = await conn.execute(
            select(payment_requests)
            .where(
                payment_requests.c.payer_account_id == self.me.id,
                payment_requests.c.state == RequestState.OPEN.value,
                payment_requests.c.expires_at > self.now,
            )
            .order_by(payment_requests.c.id.desc())
            .limit(WAITING_MAX)
        )
        held = await conn.execute(
            select(settlements)
            .where(
                settlements.c.payee_account_id == self.me.id,
                settlements.c.state == SettlementState.HELD.value,
                settlements.c.role != "payer",
            )
            .order_by(settlements.c.id.desc())
            .limit(WAITING_MAX)
        )
        items = [await self.request_item(conn, requests.request_from_row(r)) for r in asked]
        items += [await self.transfer_item(conn, settlement.settlement_from_row(r)) for r in held]
        return sorted(items, key=lambda item: item["record"].id, reverse=True)

    async def my_requests(self, conn: AsyncConnection, limit: int = RECENT) -> list[dict]:
        """The user's latest requests to others, whatever became of them."""
        rows = await conn.execute(
            select(payment_requests)
            .where(payment_requests.c.payee_account_id == self.me.id)
            .order_by(payment_requests.c.id.desc())
            .limit(limit)
        )
        return [await self.request_item(conn, requests.request_from_row(row)) for row in rows]

    async def history(
        self,
        conn: AsyncConnection,
        filters: HistoryFilter,
        limit: int,
        max_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """The user's payments, newest first, as the history lists them."""
        rows = await conn.execute(history_query(self.me, filters, limit, max_id))
        return [await self.transfer_item(conn, settlement.settlement_from_row(row)) for row in rows]


REQUEST_STATES = {
    "open": "Open",
    "paid": "Paid",
    "declined": "Declined",
    "expired": "Expired",
    "cancelled": "Cancelled",
}
TRANSFER_STATES = {
    "pending": "Under way",
    "completed": "Completed",
    "rejected": "Refused",
    "awaiting_acceptance": "Waiting to be accepted",
}
