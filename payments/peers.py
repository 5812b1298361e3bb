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

from sqlalchemy import bindparam, select
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
    transfer_max: int | None


def peer_owner(host: str) -> str:
    return f"{PEER_PREFIX}{host}"


# Read for every offer a peer makes (`kith_direct`: see payments/ledger.py).
_LIMITS = (
    select(peer_limits.c.credit_limit, peer_limits.c.transfer_max)
    .where(peer_limits.c.peer == bindparam("peer"), peer_limits.c.currency == bindparam("currency"))
    .execution_options(kith_direct=True)
)


async def limits(
    conn: AsyncConnection, peer_host: str, currency: str, default: DefaultLimit
) -> tuple[int, int | None]:
    """What `peer_host` may owe this node in `currency`, and the most one payment from its
    users may be (None: no limit of its own)."""
    row = (await conn.execute(_LIMITS, {"peer": peer_host, "currency": currency})).first()
    if row is None:
        return default(peer_host, currency), None
    return row.credit_limit, row.transfer_max


async def set_limits(
    conn: AsyncConnection,
    peer_host: str,
    currency: str,
    credit_limit: int,
    now: datetime,
    transfer_max: int | None = None,
) -> None:
    """Let `peer_host` owe us up to `credit_limit` (0: none), each payment from its users at
    most `transfer_max`. Debts above the limit stay; new payments stop."""
    if credit_limit < 0 or (transfer_max is not None and transfer_max <= 0):
        raise ValueError("limits cannot be negative")
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {"credit_limit": credit_limit, "transfer_max": transfer_max, "updated_at": now}
    statement = dialect.insert(peer_limits).values(peer=peer_host, currency=currency, **values)
    await conn.execute(
        statement.on_conflict_do_update(index_elements=["peer", "currency"], set_=values)
    )


async def positions(conn: AsyncConnection, default: DefaultLimit) -> list[PeerPosition]:
    """Every peer we have an account or a limit with, per currency."""
    accounts = {
        (a.owner.removeprefix(PEER_PREFIX), a.currency): a
        for a in await ledger.all_accounts(conn)
        if a.owner.startswith(PEER_PREFIX)
    }
    set_by_operator = {
        (row.peer, row.currency): (row.credit_limit, row.transfer_max)
        for row in await conn.execute(select(peer_limits))
    }
    found = []
    for peer, currency in sorted(accounts.keys() | set_by_operator.keys()):
        account = accounts.get((peer, currency))
        limit, transfer_max = set_by_operator.get((peer, currency), (None, None))
        found.append(
            PeerPosition(
                peer=peer,
                currency=currency,
                owes_us=-account.balance if account else 0,
                reserved_for_them=account.credits_pending if account else 0,
                credit_limit=default(peer, currency) if limit is None else limit,
                transfer_max=transfer_max,
            )
        )
    return found
