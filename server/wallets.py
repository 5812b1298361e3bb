"""Local users' wallets on the node's ledger, and money entering and leaving through the operator.

A wallet is the ledger account `user:<account id>` in one currency; `external` is where an
operator's deposits come from and withdrawals go (the only account that may go below zero:
it is the money outside the system). Deposits and withdrawals carry an operator reference that
is their idempotency key, so repeating a command after a crash never moves money twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payments import ledger
from payments.ledger import Failure, Kind, Outcome, Transfer
from payments.money import Currency
from payments.parties import EXTERNAL_OWNER, user_owner
from payments.tables import payment_requests, settlements
from server.identity.accounts import Account
from server.storage.ids import new_id


class WalletError(Exception):
    """A wallet operation that did not happen, with why."""


@dataclass(frozen=True)
class Balance:
    currency: str
    balance: int
    available: int
    incoming: int


async def deposit(
    conn: AsyncConnection,
    account: Account,
    minor: int,
    currency: Currency,
    now: datetime,
    reference: str | None = None,
) -> Outcome:
    """Money paid in to the operator, credited to a local user's wallet."""
    return await _move(conn, account, minor, currency, now, "deposit", reference)


async def withdraw(
    conn: AsyncConnection,
    account: Account,
    minor: int,
    currency: Currency,
    now: datetime,
    reference: str | None = None,
) -> Outcome:
    """Money paid out by the operator, debited from a local user's wallet (never below zero)."""
    return await _move(conn, account, minor, currency, now, "withdrawal", reference)


async def _move(
    conn: AsyncConnection,
    account: Account,
    minor: int,
    currency: Currency,
    now: datetime,
    kind: str,
    reference: str | None,
) -> Outcome:
    if not account.is_local or account.is_deleted:
        raise WalletError("only an existing local user has a wallet")
    external = await ledger.open_account(
        conn, EXTERNAL_OWNER, currency.code, new_id, now, may_go_negative=True
    )
    wallet = await ledger.open_account(conn, user_owner(account.id), currency.code, new_id, now)
    debit, credit = (external, wallet) if kind == "deposit" else (wallet, external)
    transfer = Transfer(
        id=f"{kind}:{reference or uuid.uuid4()}",
        kind=Kind.SINGLE,
        debit_account_id=debit.id,
        credit_account_id=credit.id,
        amount=minor,
        currency=currency.code,
        memo=f"{kind} by the operator",
    )
    try:
        outcome = await ledger.apply(conn, transfer, new_id, now)
    except ledger.LedgerError as exc:
        raise WalletError(str(exc)) from None
    if outcome.failure is Failure.INSUFFICIENT_FUNDS:
        raise WalletError("the wallet does not hold that much")
    if outcome.failure is not None:
        raise WalletError(f"the ledger refused it: {outcome.failure.value}")
    return outcome


async def balances(conn: AsyncConnection, account: Account) -> list[Balance]:
    """The user's wallet in every currency it has held."""
    return [
        Balance(a.currency, a.balance, a.available, a.credits_pending)
        for a in await ledger.accounts_of(conn, user_owner(account.id))
    ]


CHANGES_MAX = 50  # per kind and answer: a page that fell further behind is reloaded by hand


@dataclass(frozen=True)
class Changes:
    """A user's payment requests and transfers stored after a mark (ids are time-sorted)."""

    request_ids: list[int]
    transfer_ids: list[int]


async def changes_since(conn: AsyncConnection, account: Account, since: int) -> Changes:
    """What a wallet page rendered at `since` does not show yet: requests and transfers the
    user pays or is paid by, stored afterwards (the newest CHANGES_MAX of each)."""
    found = []
    for table in (payment_requests, settlements):
        rows = await conn.execute(
            select(table.c.id)
            .where(
                table.c.id > since,
                or_(table.c.payer_account_id == account.id, table.c.payee_account_id == account.id),
            )
            .order_by(table.c.id.desc())
            .limit(CHANGES_MAX)
        )
        found.append(sorted(rows.scalars()))
    return Changes(*found)
