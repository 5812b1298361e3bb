"""The payments of a node at a glance, for `/metrics` and `kith status`: how many settlements
and requests are in each state, the ledger's totals by kind of owner, the last statement with
each peer.

Aggregates over whole tables (settlements and requests grow with every payment): cheap for the
sizes a community node reaches, and read at a scrape's pace, never per payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.parties import EXTERNAL_OWNER, utc
from payments.peers import PEER_PREFIX
from payments.settlement import SettlementState
from payments.tables import ledger_accounts, payment_requests, peer_statements, settlements

USER_PREFIX = "user:"


@dataclass(frozen=True)
class LedgerTotal:
    """One currency's accounts of one kind summed: `wallets` (local users), `peers` (other
    nodes), `external` (money in and out through operators), `other` (fees, escrow). Over all
    kinds each currency's `balance` sums to zero (every transfer balances)."""

    currency: str
    kind: str
    balance: int  # credits posted minus debits posted, in minor units
    debits_pending: int  # reserved: payments out waiting for a decision
    credits_pending: int  # on the way in: held transfers waiting for their payee


@dataclass(frozen=True)
class LastStatement:
    peer: str  # the other node's actor
    currency: str
    role: str  # issuer or counterparty
    sequence: int
    state: str  # proposed, agreed, disputed
    as_of: datetime
    updated_at: datetime


async def settlement_counts(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """Settlements by (role, state)."""
    rows = await conn.execute(
        select(settlements.c.role, settlements.c.state, func.count()).group_by(
            settlements.c.role, settlements.c.state
        )
    )
    return {(role, state): count for role, state, count in rows}


async def in_doubt_count(conn: AsyncConnection, before: datetime) -> int:
    """Payments from our users reserved before `before` still waiting for a decision (what
    `kith payments in-doubt` lists)."""
    return (
        await conn.execute(
            select(func.count()).where(
                settlements.c.state == SettlementState.PREPARED.value,
                settlements.c.created_at < before,
            )
        )
    ).scalar_one()


async def request_counts(conn: AsyncConnection) -> dict[str, int]:
    """Payment requests by state (open ones past their expiry count as open until the expiry
    sweep ends them, within a minute)."""
    rows = await conn.execute(
        select(payment_requests.c.state, func.count()).group_by(payment_requests.c.state)
    )
    return {state: count for state, count in rows}


async def ledger_totals(conn: AsyncConnection) -> list[LedgerTotal]:
    """Every currency's balances summed by kind of owner."""
    owner = ledger_accounts.c.owner
    kind = case(
        (owner.startswith(USER_PREFIX), "wallets"),
        (owner.startswith(PEER_PREFIX), "peers"),
        (owner == EXTERNAL_OWNER, "external"),
        else_="other",
    ).label("kind")
    rows = await conn.execute(
        select(
            ledger_accounts.c.currency,
            kind,
            func.sum(ledger_accounts.c.credits_posted - ledger_accounts.c.debits_posted),
            func.sum(ledger_accounts.c.debits_pending),
            func.sum(ledger_accounts.c.credits_pending),
        )
        .group_by(ledger_accounts.c.currency, kind)
        .order_by(ledger_accounts.c.currency, kind)
    )
    return [
        LedgerTotal(currency, kind_, int(balance), int(debits), int(credits))
        for currency, kind_, balance, debits, credits in rows
    ]


async def last_statements(conn: AsyncConnection) -> list[LastStatement]:
    """The latest statement with each peer in each currency, by peer."""
    latest = select(func.max(peer_statements.c.id)).group_by(
        peer_statements.c.peer, peer_statements.c.currency
    )
    rows = await conn.execute(
        select(peer_statements)
        .where(peer_statements.c.id.in_(latest))
        .order_by(peer_statements.c.peer, peer_statements.c.currency)
    )
    return [
        LastStatement(
            peer=row.peer,
            currency=row.currency,
            role=row.role,
            sequence=row.sequence,
            state=row.state,
            as_of=utc(row.as_of),
            updated_at=utc(row.updated_at),
        )
        for row in rows
    ]
