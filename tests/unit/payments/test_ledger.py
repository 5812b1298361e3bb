"""The ledger against a real database: random sequences of deposits, payments, reservations,
posts, voids, retries and conflicting reuses of ids keep every invariant after every step, and
agree with a reference model of what each step must do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from payments.ledger import (
    Conflict,
    Failure,
    Kind,
    LedgerError,
    Outcome,
    Transfer,
    accounts_of,
    apply,
    audit,
    open_account,
    unresolved_pending,
)
from payments.tables import ledger_accounts, ledger_transfers
from server.config import load_config
from server.node import open_database
from server.storage.engine import Database
from server.storage.ids import new_id
from tests.databases import DatabaseFactory

NOW = datetime(2026, 12, 5, tzinfo=UTC)
USERS = 3


@pytest.fixture
async def db(databases: DatabaseFactory, tmp_path) -> AsyncIterator[Database]:
    config = load_config(
        None, environ={}, overrides={"database.url": await databases.new()}, cwd=tmp_path
    )
    database = await open_database(config, initialize_empty=True)
    yield database
    await database.dispose()


@dataclass
class Model:
    """What the ledger must hold: posted balances and pending reservations, per account id."""

    ids: dict[str, int]  # owner -> EUR account id ("yen" -> a JPY account)
    balance: dict[int, int] = field(default_factory=dict)
    reserved: dict[int, int] = field(default_factory=dict)  # pending debits
    incoming: dict[int, int] = field(default_factory=dict)  # pending credits
    applied: list[tuple[Transfer, Outcome]] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # pending id -> state

    def available(self, account: int) -> int:
        return self.balance.get(account, 0) - self.reserved.get(account, 0)

    def expect(self, transfer: Transfer) -> Failure | None:
        """The failure the ledger must answer for a new transfer, updating the model."""
        debit, credit, amount = (
            transfer.debit_account_id,
            transfer.credit_account_id,
            transfer.amount,
        )
        if self.ids["yen"] in (debit, credit):
            return Failure.CURRENCY_MISMATCH
        negative_ok = debit == self.ids["external"]
        if transfer.kind in (Kind.SINGLE, Kind.PENDING):
            if not negative_ok and self.available(debit) < amount:
                return Failure.INSUFFICIENT_FUNDS
            if transfer.kind is Kind.SINGLE:
                self.balance[debit] = self.balance.get(debit, 0) - amount
                self.balance[credit] = self.balance.get(credit, 0) + amount
            else:
                self.reserved[debit] = self.reserved.get(debit, 0) + amount
                self.incoming[credit] = self.incoming.get(credit, 0) + amount
                self.pending[transfer.id] = "pending"
            return None
        assert transfer.pending_id is not None
        if self.pending.get(transfer.pending_id) != "pending":
            return Failure.PENDING_ALREADY_RESOLVED
        self.pending[transfer.pending_id] = "posted" if transfer.kind is Kind.POST else "voided"
        self.reserved[debit] -= amount
        self.incoming[credit] -= amount
        if transfer.kind is Kind.POST:
            self.balance[debit] = self.balance.get(debit, 0) - amount
            self.balance[credit] = self.balance.get(credit, 0) + amount
        return None


STEPS = st.lists(
    st.tuples(
        # Deposits and reservations come often, so that later steps have money and holds to
        # act on (a post or void of a resolved hold, a payment beyond what is left…).
        st.sampled_from(
            ["deposit"] * 3
            + ["reserve"] * 3
            + ["pay", "pay", "post", "post", "void", "void", "retry", "conflict", "yen"]
        ),
        st.integers(0, USERS - 1),
        st.integers(0, USERS - 1),
        st.integers(1, 5_000),
        st.integers(0, 50),
    ),
    min_size=10,
    max_size=60,
)


async def _reset(db: Database) -> Model:
    async with db.transaction() as conn:
        await conn.execute(delete(ledger_transfers))
        await conn.execute(delete(ledger_accounts))
        ids = {"external": (await open_account(conn, "external", "EUR", new_id, NOW, True)).id}
        for n in range(USERS):
            ids[f"user:{n}"] = (await open_account(conn, f"user:{n}", "EUR", new_id, NOW)).id
        ids["yen"] = (await open_account(conn, "user:0", "JPY", new_id, NOW)).id
    return Model(ids)


def _transfer(model: Model, step: tuple[str, int, int, int, int], serial: int) -> Transfer | None:
    """The transfer a step asks for (None when the step has nothing to act on)."""
    action, a, b, amount, pick = step
    user, other, external = model.ids[f"user:{a}"], model.ids[f"user:{b}"], model.ids["external"]
    tid = f"t{serial}"
    if action == "deposit":
        return Transfer(tid, Kind.SINGLE, external, user, amount, "EUR", "deposit")
    if action == "pay" and a != b:
        return Transfer(tid, Kind.SINGLE, user, other, amount, "EUR")
    if action == "reserve" and a != b:
        return Transfer(tid, Kind.PENDING, user, other, amount, "EUR")
    if action in ("post", "void"):
        reservations = [t for t, o in model.applied if t.kind is Kind.PENDING and o.ok]
        if not reservations:
            return None
        original = reservations[pick % len(reservations)]
        kind = Kind.POST if action == "post" else Kind.VOID
        return replace(original, id=tid, kind=kind, pending_id=original.id, memo="")
    if action == "yen":
        return Transfer(tid, Kind.SINGLE, model.ids["yen"], other, amount, "EUR")
    return None


async def _check_invariants(db: Database, model: Model) -> None:
    async with db.read() as conn:
        assert await audit(conn) == []
        for owner, account_id in model.ids.items():
            if owner == "yen":
                continue
            (account,) = [a for a in await accounts_of(conn, owner) if a.currency == "EUR"]
            assert account.id == account_id
            assert account.balance == model.balance.get(account_id, 0), owner
            assert account.debits_pending == model.reserved.get(account_id, 0), owner
            assert account.credits_pending == model.incoming.get(account_id, 0), owner
            if owner != "external":
                assert account.available >= 0, owner
        still_pending = sum(1 for state in model.pending.values() if state == "pending")
        assert await unresolved_pending(conn) == still_pending


async def _run(db: Database, steps: list[tuple[str, int, int, int, int]]) -> None:
    model = await _reset(db)
    for serial, step in enumerate(steps):
        action, *_, pick = step
        if action in ("retry", "conflict"):
            if not model.applied:
                continue
            earlier, outcome = model.applied[pick % len(model.applied)]
            async with db.transaction() as conn:
                if action == "retry":
                    # The same id and content: the stored outcome, and nothing moves.
                    again = await apply(conn, earlier, new_id, NOW)
                    assert (again.failure, again.replayed) == (outcome.failure, True)
                else:
                    with pytest.raises(Conflict):
                        await apply(conn, replace(earlier, amount=earlier.amount + 1), new_id, NOW)
        else:
            transfer = _transfer(model, step, serial)
            if transfer is None:
                continue
            expected = model.expect(transfer)
            async with db.transaction() as conn:
                outcome = await apply(conn, transfer, new_id, NOW)
            assert (outcome.failure, outcome.replayed) == (expected, False), step
            model.applied.append((transfer, outcome))
        await _check_invariants(db, model)


async def test_every_invariant_holds_after_every_step_of_random_sequences(db: Database) -> None:
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(steps=STEPS)
    def check(steps: list[tuple[str, int, int, int, int]]) -> None:
        asyncio.run_coroutine_threadsafe(_run(db, steps), loop).result(timeout=60)

    await asyncio.to_thread(check)


async def test_a_pending_transfer_is_resolved_exactly_once(db: Database) -> None:
    model = await _reset(db)
    alice, bob, external = model.ids["user:0"], model.ids["user:1"], model.ids["external"]
    async with db.transaction() as conn:
        await apply(conn, Transfer("in", Kind.SINGLE, external, alice, 100, "EUR"), new_id, NOW)
        hold = Transfer("hold", Kind.PENDING, alice, bob, 60, "EUR")
        assert (await apply(conn, hold, new_id, NOW)).ok
        post = replace(hold, id="post", kind=Kind.POST, pending_id="hold")
        void = replace(hold, id="void", kind=Kind.VOID, pending_id="hold")
        assert (await apply(conn, post, new_id, NOW)).ok
        assert (await apply(conn, void, new_id, NOW)).failure is Failure.PENDING_ALREADY_RESOLVED
        # The failed id stays failed, even though nothing would stop a new attempt now.
        assert (await apply(conn, void, new_id, NOW)).failure is Failure.PENDING_ALREADY_RESOLVED
        (wallet,) = await accounts_of(conn, "user:1")
        assert wallet.balance == 60
        assert await audit(conn) == []


async def test_a_wallet_cannot_spend_what_a_reservation_holds(db: Database) -> None:
    model = await _reset(db)
    alice, bob, external = model.ids["user:0"], model.ids["user:1"], model.ids["external"]
    async with db.transaction() as conn:
        await apply(conn, Transfer("in", Kind.SINGLE, external, alice, 100, "EUR"), new_id, NOW)
        await apply(conn, Transfer("hold", Kind.PENDING, alice, bob, 80, "EUR"), new_id, NOW)
        spend = Transfer("spend", Kind.SINGLE, alice, bob, 30, "EUR")
        assert (await apply(conn, spend, new_id, NOW)).failure is Failure.INSUFFICIENT_FUNDS


@pytest.mark.parametrize(
    ("amount", "same_account", "pending_id"),
    [(0, False, None), (-5, False, None), (10**16, False, None), (5, True, None), (5, False, "x")],
)
async def test_malformed_transfers_are_refused_and_store_nothing(
    db: Database, amount: int, same_account: bool, pending_id: str | None
) -> None:
    model = await _reset(db)
    alice, bob = model.ids["user:0"], model.ids["user:1"]
    transfer = Transfer("bad", Kind.SINGLE, alice, alice if same_account else bob, amount, "EUR")
    async with db.transaction() as conn:
        with pytest.raises(LedgerError):
            await apply(conn, replace(transfer, pending_id=pending_id), new_id, NOW)
        assert await audit(conn) == []
        good = replace(transfer, credit_account_id=bob, amount=1)
        # The id was not taken by the refused attempt.
        assert (await apply(conn, good, new_id, NOW)).failure is Failure.INSUFFICIENT_FUNDS


async def test_concurrent_spends_from_one_wallet_never_overdraw_it(db: Database) -> None:
    """Twenty payments of 10 race for a wallet holding 95 (truly in parallel on PostgreSQL,
    where each runs in its own transaction on its own connection): nine succeed."""
    model = await _reset(db)
    alice, bob, external = model.ids["user:0"], model.ids["user:1"], model.ids["external"]
    async with db.transaction() as conn:
        await apply(conn, Transfer("in", Kind.SINGLE, external, alice, 95, "EUR"), new_id, NOW)

    async def spend(serial: int) -> Outcome:
        async with db.transaction() as conn:
            transfer = Transfer(f"spend{serial}", Kind.SINGLE, alice, bob, 10, "EUR")
            return await apply(conn, transfer, new_id, NOW)

    outcomes = await asyncio.gather(*(spend(n) for n in range(20)))
    assert sum(1 for o in outcomes if o.ok) == 9
    assert {o.failure for o in outcomes if not o.ok} == {Failure.INSUFFICIENT_FUNDS}
    async with db.read() as conn:
        assert await audit(conn) == []
        wallets = {a.currency: a for a in await accounts_of(conn, "user:0")}
        assert wallets["EUR"].balance == 5


async def test_opposite_payments_at_once_neither_deadlock_nor_lose_money(db: Database) -> None:
    model = await _reset(db)
    alice, bob, external = model.ids["user:0"], model.ids["user:1"], model.ids["external"]
    async with db.transaction() as conn:
        await apply(conn, Transfer("a", Kind.SINGLE, external, alice, 1000, "EUR"), new_id, NOW)
        await apply(conn, Transfer("b", Kind.SINGLE, external, bob, 1000, "EUR"), new_id, NOW)

    async def pay(serial: int) -> Outcome:
        debit, credit = (alice, bob) if serial % 2 else (bob, alice)
        async with db.transaction() as conn:
            transfer = Transfer(f"p{serial}", Kind.SINGLE, debit, credit, 7, "EUR")
            return await apply(conn, transfer, new_id, NOW)

    outcomes = await asyncio.gather(*(pay(n) for n in range(40)))
    assert all(o.ok for o in outcomes)
    async with db.read() as conn:
        assert await audit(conn) == []
        totals = [
            a.balance for owner in ("user:0", "user:1") for a in await accounts_of(conn, owner)
        ]
        assert sum(totals) == 2000
