"""The double-entry ledger: accounts per owner and currency, and transfers between them.

Every transfer moves one amount of one currency from a debit account to a credit account, so
every transaction balances per currency by construction. Transfers are single-phase (posted at
once) or two-phase: a `pending` transfer reserves the amount, and exactly one later `post` or
`void` transfer resolves it (TigerBeetle's model). A transfer id is an idempotency key: the same
id with the same content returns the stored outcome, with other content it is a conflict, and
a failed id stays failed. Wallets (`user:` accounts) never go below zero, pending debits
included; only `external` and peer accounts may.

Functions take the caller's connection: the caller owns the transaction, so ledger effects
commit together with whatever caused them (and durably, before anything is acknowledged).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Insert, Update, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.money import AmountError, check_minor
from payments.tables import ledger_accounts, ledger_transfers

NewId = Callable[[datetime], int]
TRANSFER_ID_LENGTH_MAX = 200


class Kind(StrEnum):
    SINGLE = "single"
    PENDING = "pending"
    POST = "post"
    VOID = "void"


class Failure(StrEnum):
    """Why a transfer was not applied (kept with its id: retrying gives the same answer)."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    CURRENCY_MISMATCH = "currency_mismatch"
    PENDING_NOT_FOUND = "pending_not_found"
    PENDING_ALREADY_RESOLVED = "pending_already_resolved"
    PENDING_MISMATCH = "pending_mismatch"


class LedgerError(ValueError):
    """A request the ledger refuses outright (nothing is stored): bad amounts or ids,
    the same account on both sides, an id reused with other content."""


class Conflict(LedgerError):
    """The id is already used by a transfer with other content."""


@dataclass(frozen=True)
class Account:
    id: int
    owner: str
    currency: str
    may_go_negative: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def balance(self) -> int:
        """Posted credits minus posted debits (what a wallet holds)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What may still be spent: the balance less what pending transfers reserve."""
        return self.balance - self.debits_pending


@dataclass(frozen=True)
class Transfer:
    """What a caller asks for. For `post` and `void`, accounts, amount and currency must be
    those of the pending transfer named by `pending_id`."""

    id: str
    kind: Kind
    debit_account_id: int
    credit_account_id: int
    amount: int
    currency: str
    memo: str = ""
    pending_id: str | None = None

    def content_hash(self) -> str:
        content = [
            self.kind.value,
            self.debit_account_id,
            self.credit_account_id,
            self.amount,
            self.currency,
            self.memo,
            self.pending_id,
        ]
        # repr quotes and escapes each string, so different contents never print the same.
        return hashlib.sha256(repr(content).encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """What happened to a transfer id: applied now, applied before (`replayed`), or failed."""

    transfer_id: str
    failure: Failure | None
    replayed: bool

    @property
    def ok(self) -> bool:
        return self.failure is None


async def open_account(
    conn: AsyncConnection,
    owner: str,
    currency: str,
    new_id: NewId,
    now: datetime,
    may_go_negative: bool = False,
) -> Account:
    """The account of `owner` in `currency`, created empty if it does not exist yet."""
    found = await account_of(conn, owner, currency)
    if found is not None:
        return found  # the usual case: one read, no write
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(
        dialect.insert(ledger_accounts)
        .values(
            id=new_id(now),
            owner=owner,
            currency=currency,
            may_go_negative=may_go_negative,
            debits_posted=0,
            credits_posted=0,
            debits_pending=0,
            credits_pending=0,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["owner", "currency"])
    )
    found = await account_of(conn, owner, currency)
    assert found is not None
    return found


# `kith_direct`: hot statements the node may run on SQLite without SQLAlchemy's execution
# machinery (server/storage/direct.py); elsewhere the option means nothing.
_ACCOUNT_BY_OWNER = (
    select(ledger_accounts)
    .where(
        ledger_accounts.c.owner == bindparam("owner"),
        ledger_accounts.c.currency == bindparam("currency"),
    )
    .execution_options(kith_direct=True)
)


async def account_of(conn: AsyncConnection, owner: str, currency: str) -> Account | None:
    row = (await conn.execute(_ACCOUNT_BY_OWNER, {"owner": owner, "currency": currency})).first()
    return _account(row) if row else None


async def accounts_of(conn: AsyncConnection, owner: str) -> list[Account]:
    """Every currency's account of one owner."""
    rows = await conn.execute(
        select(ledger_accounts)
        .where(ledger_accounts.c.owner == owner)
        .order_by(ledger_accounts.c.currency)
    )
    return [_account(row) for row in rows]


async def all_accounts(conn: AsyncConnection) -> list[Account]:
    """Every account of the ledger (audits and reports)."""
    rows = await conn.execute(select(ledger_accounts).order_by(ledger_accounts.c.id))
    return [_account(row) for row in rows]


async def apply(conn: AsyncConnection, transfer: Transfer, new_id: NewId, now: datetime) -> Outcome:
    """Apply one transfer in the caller's transaction, once per id."""
    _validate(transfer)
    content_hash = transfer.content_hash()
    inserted = await conn.execute(
        _insert_transfer(conn.dialect.name),
        {
            "id": transfer.id,
            "serial": new_id(now),
            "kind": transfer.kind.value,
            "debit_account_id": transfer.debit_account_id,
            "credit_account_id": transfer.credit_account_id,
            "amount": transfer.amount,
            "currency": transfer.currency,
            "pending_id": transfer.pending_id,
            "memo": transfer.memo,
            "content_hash": content_hash,
            "failure": None,
            "pending_state": "pending" if transfer.kind is Kind.PENDING else None,
            "created_at": now,
        },
    )
    if inserted.rowcount == 0:
        return await _replay(conn, transfer.id, content_hash)
    failure = await _effect(conn, transfer)
    if failure is not None:
        await conn.execute(_FAILED, {"transfer": transfer.id, "failure": failure.value})
    return Outcome(transfer.id, failure, replayed=False)


# The statements of a transfer, built once (building one costs more than SQLite takes to run
# it) and run with the transfer's values as parameters.
@functools.cache
def _insert_transfer(dialect_name: str) -> Insert:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return (
        dialect.insert(ledger_transfers)
        .on_conflict_do_nothing(index_elements=["id"])
        .execution_options(kith_direct=True)
    )


_FAILED = (
    update(ledger_transfers)
    .where(ledger_transfers.c.id == bindparam("transfer"))
    .values(failure=bindparam("failure"), pending_state=None)
    .execution_options(kith_direct=True)
)
_STORED = (
    select(ledger_transfers.c.content_hash, ledger_transfers.c.failure)
    .where(ledger_transfers.c.id == bindparam("transfer"))
    .execution_options(kith_direct=True)
)
# Both rows are locked first, in id order: two opposite transfers between the same accounts
# running at once on PostgreSQL would otherwise each hold one lock and deadlock.
_LOCK_ACCOUNTS = (
    select(ledger_accounts.c.id, ledger_accounts.c.currency)
    .where(ledger_accounts.c.id.in_([bindparam("debit"), bindparam("credit")]))
    .order_by(ledger_accounts.c.id)
    .with_for_update()
    .execution_options(kith_direct=True)
)


def _debit(column: str) -> Update:
    """Debit `amount` unless the account may not go below zero and lacks it. The check and the
    debit are one statement: under concurrent writers (several processes on PostgreSQL) the
    row lock it takes makes the check see the latest balance."""
    c = ledger_accounts.c
    return (
        update(ledger_accounts)
        .where(
            c.id == bindparam("account"),
            or_(
                c.may_go_negative,
                c.credits_posted - c.debits_posted - c.debits_pending >= bindparam("amount"),
            ),
        )
        .values({column: c[column] + bindparam("amount")})
        .execution_options(kith_direct=True)
    )


def _credit(column: str) -> Update:
    c = ledger_accounts.c
    return (
        update(ledger_accounts)
        .where(c.id == bindparam("account"))
        .values({column: c[column] + bindparam("amount")})
        .execution_options(kith_direct=True)
    )


_DEBIT = {False: _debit("debits_posted"), True: _debit("debits_pending")}
_CREDIT = {False: _credit("credits_posted"), True: _credit("credits_pending")}


async def _replay(conn: AsyncConnection, transfer_id: str, content_hash: str) -> Outcome:
    row = (await conn.execute(_STORED, {"transfer": transfer_id})).one()
    if row.content_hash != content_hash:
        raise Conflict(f"transfer {transfer_id} exists with other content")
    return Outcome(transfer_id, Failure(row.failure) if row.failure else None, replayed=True)


def _validate(transfer: Transfer) -> None:
    if not transfer.id or len(transfer.id) > TRANSFER_ID_LENGTH_MAX:
        raise LedgerError(f"a transfer id is 1 to {TRANSFER_ID_LENGTH_MAX} characters")
    try:
        check_minor(transfer.amount)
    except AmountError as exc:
        raise LedgerError(str(exc)) from None
    if transfer.debit_account_id == transfer.credit_account_id:
        raise LedgerError("a transfer needs two different accounts")
    needs_pending = transfer.kind in (Kind.POST, Kind.VOID)
    if needs_pending != (transfer.pending_id is not None):
        raise LedgerError("post and void transfers, and only they, name a pending transfer")


async def _effect(conn: AsyncConnection, transfer: Transfer) -> Failure | None:
    """Move the balances; a failure leaves them as they were."""
    ids = {"debit": transfer.debit_account_id, "credit": transfer.credit_account_id}
    currencies = (await conn.execute(_LOCK_ACCOUNTS, ids)).all()
    if len(currencies) != 2 or any(c != transfer.currency for _, c in currencies):
        return Failure.CURRENCY_MISMATCH
    if transfer.kind in (Kind.POST, Kind.VOID):
        return await _resolve(conn, transfer)
    pending = transfer.kind is Kind.PENDING
    amount = transfer.amount
    debited = await conn.execute(
        _DEBIT[pending], {"account": transfer.debit_account_id, "amount": amount}
    )
    if debited.rowcount == 0:
        return Failure.INSUFFICIENT_FUNDS
    await conn.execute(_CREDIT[pending], {"account": transfer.credit_account_id, "amount": amount})
    return None


_PENDING = (
    select(ledger_transfers)
    .where(
        ledger_transfers.c.id == bindparam("pending"),
        ledger_transfers.c.kind == Kind.PENDING.value,
        ledger_transfers.c.failure.is_(None),
    )
    .execution_options(kith_direct=True)
)
_CLAIM_PENDING = (
    update(ledger_transfers)
    .where(
        ledger_transfers.c.id == bindparam("pending"), ledger_transfers.c.pending_state == "pending"
    )
    .values(pending_state=bindparam("state"))
    .execution_options(kith_direct=True)
)
# A pending amount leaves the pending column; posted, it lands in the posted one (`posted` is
# the amount or 0).
_SETTLE_DEBIT = (
    update(ledger_accounts)
    .where(ledger_accounts.c.id == bindparam("account"))
    .values(
        debits_pending=ledger_accounts.c.debits_pending - bindparam("amount"),
        debits_posted=ledger_accounts.c.debits_posted + bindparam("posted"),
    )
    .execution_options(kith_direct=True)
)
_SETTLE_CREDIT = (
    update(ledger_accounts)
    .where(ledger_accounts.c.id == bindparam("account"))
    .values(
        credits_pending=ledger_accounts.c.credits_pending - bindparam("amount"),
        credits_posted=ledger_accounts.c.credits_posted + bindparam("posted"),
    )
    .execution_options(kith_direct=True)
)


async def _resolve(conn: AsyncConnection, transfer: Transfer) -> Failure | None:
    """Post or void a pending transfer, exactly once."""
    original = (await conn.execute(_PENDING, {"pending": transfer.pending_id})).first()
    if original is None:
        return Failure.PENDING_NOT_FOUND
    same = (
        original.debit_account_id,
        original.credit_account_id,
        original.amount,
        original.currency,
    ) == (
        transfer.debit_account_id,
        transfer.credit_account_id,
        transfer.amount,
        transfer.currency,
    )
    if not same:
        return Failure.PENDING_MISMATCH
    state = "posted" if transfer.kind is Kind.POST else "voided"
    claimed = await conn.execute(_CLAIM_PENDING, {"pending": transfer.pending_id, "state": state})
    if claimed.rowcount == 0:
        return Failure.PENDING_ALREADY_RESOLVED
    amount = transfer.amount
    posted = amount if transfer.kind is Kind.POST else 0
    values = {"amount": amount, "posted": posted}
    await conn.execute(_SETTLE_DEBIT, {"account": transfer.debit_account_id, **values})
    await conn.execute(_SETTLE_CREDIT, {"account": transfer.credit_account_id, **values})
    return None


async def history(
    conn: AsyncConnection, account: Account, limit: int = 50, before_serial: int | None = None
) -> list[dict]:
    """The account's applied transfers, newest first."""
    touches = or_(
        ledger_transfers.c.debit_account_id == account.id,
        ledger_transfers.c.credit_account_id == account.id,
    )
    query = select(ledger_transfers).where(touches, ledger_transfers.c.failure.is_(None))
    if before_serial is not None:
        query = query.where(ledger_transfers.c.serial < before_serial)
    rows = await conn.execute(query.order_by(ledger_transfers.c.serial.desc()).limit(limit))
    return [dict(row._mapping) for row in rows]


async def audit(conn: AsyncConnection) -> list[str]:
    """Every disagreement between the accounts' balances and their transfers; empty if none.

    Recomputes each account's four totals from the applied transfers, checks that wallets
    are not below zero, that each transfer joins two accounts of its currency, and that every
    currency's accounts sum to zero (double entry)."""
    problems: list[str] = []
    accounts = {row.id: _account(row) for row in await conn.execute(select(ledger_accounts))}
    totals = {a: [0, 0, 0, 0] for a in accounts}  # debits/credits posted, debits/credits pending
    applied = ledger_transfers.c.failure.is_(None)
    rows = await conn.execute(
        select(
            ledger_transfers.c.id,
            ledger_transfers.c.kind,
            ledger_transfers.c.debit_account_id,
            ledger_transfers.c.credit_account_id,
            ledger_transfers.c.amount,
            ledger_transfers.c.currency,
            ledger_transfers.c.pending_state,
        ).where(applied)
    )
    for row in rows:
        debit, credit = accounts.get(row.debit_account_id), accounts.get(row.credit_account_id)
        if debit is None or credit is None:
            problems.append(f"transfer {row.id} names an account that does not exist")
            continue
        if not debit.currency == credit.currency == row.currency:
            problems.append(f"transfer {row.id} joins accounts of another currency")
        if row.kind == Kind.SINGLE or (row.kind == Kind.PENDING and row.pending_state == "posted"):
            totals[debit.id][0] += row.amount
            totals[credit.id][1] += row.amount
        elif row.kind == Kind.PENDING and row.pending_state == "pending":
            totals[debit.id][2] += row.amount
            totals[credit.id][3] += row.amount
    per_currency: dict[str, int] = {}
    for account in accounts.values():
        stored = [
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        ]
        if stored != totals[account.id]:
            problems.append(
                f"account {account.owner} {account.currency}: stored totals {stored},"
                f" transfers say {totals[account.id]}"
            )
        if not account.may_go_negative and account.available < 0:
            problems.append(f"account {account.owner} {account.currency} is below zero")
        per_currency[account.currency] = per_currency.get(account.currency, 0) + account.balance
    for currency, total in sorted(per_currency.items()):
        if total != 0:
            problems.append(f"{currency}: balances sum to {total}, not zero")
    return problems


async def unresolved_pending(conn: AsyncConnection) -> int:
    """How many pending transfers are neither posted nor voided yet."""
    query = (
        select(func.count())
        .select_from(ledger_transfers)
        .where(
            and_(
                ledger_transfers.c.kind == Kind.PENDING.value,
                ledger_transfers.c.pending_state == "pending",
            )
        )
    )
    return int((await conn.execute(query)).scalar_one())


def _account(row: object) -> Account:
    m = row._mapping  # type: ignore[attr-defined]
    return Account(
        id=m["id"],
        owner=m["owner"],
        currency=m["currency"],
        may_go_negative=bool(m["may_go_negative"]),
        debits_posted=m["debits_posted"],
        credits_posted=m["credits_posted"],
        debits_pending=m["debits_pending"],
        credits_pending=m["credits_pending"],
    )
