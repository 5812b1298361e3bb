"""Peer nodes as the ledger sees them: what each owes us or we owe it, per currency, and the
credit limit the operator sets for each (reference §6.6).

One ledger account per peer host and currency: a payment from our user to theirs credits it
(we owe them), a payment from theirs to ours debits it (they owe us). Its balance, negated, is
the peer's debt to us; the credit limit caps that debt when we decide their transfers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from payments import ledger
from payments.tables import peer_limits

PEER_PREFIX = "peer:"
# (peer host, currency) -> what that peer may owe us when the operator set no limit for it.
DefaultLimit = Callable[[str, str], int]


@dataclass(frozen=True)
class PeerPosition:
    peer: str  # host[:port]
    currency: str
    owes_us: int  # negative: we owe them
    reserved_for_them: int  # our users' payments to them still waiting for their decision
    credit_limit: int


def peer_owner(host: str) -> str:
    return f"{PEER_PREFIX}{host}"


async def credit_limit(
    conn: AsyncConnection, peer_host: str, currency: str, default: DefaultLimit
) -> int:
    """What `peer_host` may owe this node in `currency`."""
    row = await conn.execute(
        select(peer_limits.c.credit_limit).where(
            peer_limits.c.peer == peer_host, peer_limits.c.currency == currency
        )
    )
    found = row.scalar_one_or_none()
    return default(peer_host, currency) if found is None else found


async def set_credit_limit(
    conn: AsyncConnection, peer_host: str, currency: str, minor: int, now: datetime
) -> None:
    """Let `peer_host` owe us up to `minor` (0: none). Debts above it stay; new ones stop."""
    if minor < 0:
        raise ValueError("a credit limit cannot be negative")
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(peer_limits).values(
        peer=peer_host, currency=currency, credit_limit=minor, updated_at=now
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["peer", "currency"],
            set_={"credit_limit": minor, "updated_at": now},
        )
    )


async def positions(conn: AsyncConnection, default: DefaultLimit) -> list[PeerPosition]:
    """Every peer we have an account or a limit with, per currency."""
    accounts = {
        (a.owner.removeprefix(PEER_PREFIX), a.currency): a
        for a in await ledger.all_accounts(conn)
        if a.owner.startswith(PEER_PREFIX)
    }
    limits = {
        (row.peer, row.currency): row.credit_limit
        for row in await conn.execute(select(peer_limits))
    }
    found = []
    for peer, currency in sorted(accounts.keys() | limits.keys()):
        account = accounts.get((peer, currency))
        limit = limits.get((peer, currency))
        found.append(
            PeerPosition(
                peer=peer,
                currency=currency,
                owes_us=-account.balance if account else 0,
                reserved_for_them=account.credits_pending if account else 0,
                credit_limit=default(peer, currency) if limit is None else limit,
            )
        )
    return found
