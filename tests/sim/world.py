"""A seeded, deterministic simulation of a payment federation.

Several nodes, each with its own SQLite file and users, run the real `payments/` code: requests,
payments, direct transfers, decisions, resends. Between them a simulated network drops,
duplicates, reorders and delays messages; a node may crash between committing a step and
sending what it produced; clocks are skewed. Everything random comes from one seed, so a
failing run is repeated exactly with `python -m tests.sim --seed N`.

After quiescence (the network made reliable, time moved on until every offer was answered)
the invariants of reference §6.8 are checked across every node's database. Odd-numbered nodes
hold direct transfers for their payees to accept (payments.transfer_acceptance_hours): payees
take or refuse some, the rest go back when the window passes.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from payments import ledger, requests, settlement
from payments.ledger import Kind, Transfer
from payments.money import Currencies
from payments.parties import (
    Message,
    NodeKey,
    Party,
    PaymentError,
    Policy,
    SettlementRejected,
    Signer,
    user_owner,
)
from payments.requests import RequestState, condition_of, fulfills
from payments.settlement import SettlementState
from payments.tables import metadata, payment_requests, settlements
from protocol import payments as wire
from protocol.errors import ProtocolError

START = datetime(2026, 12, 5, 12, tzinfo=UTC)
CURRENCIES = ("EUR", "JPY")
USERS_PER_NODE = 3
DEPOSIT = {"EUR": 50_00, "JPY": 5_000}
CREDIT_LIMIT = {"EUR": 60_00, "JPY": 6_000}
ACCEPTANCE_WINDOW = timedelta(minutes=30)


@dataclass(frozen=True)
class Faults:
    drop: float = 0.15
    duplicate: float = 0.15
    crash_after_commit: float = 0.08
    max_delay_s: float = 90.0
    max_skew_s: float = 40.0


@dataclass
class User:
    account_id: int
    uri: str
    signer: Signer


@dataclass
class Node:
    index: int
    key: NodeKey
    engine: AsyncEngine
    users: list[User]
    skew: timedelta
    policy: Policy
    known_requests: list[str] = field(default_factory=list)  # requests its users received
    own_requests: list[str] = field(default_factory=list)
    transfer_uris: list[str] = field(default_factory=list)

    def now(self, world_time: datetime) -> datetime:
        return world_time + self.skew


@dataclass(order=True)
class InFlight:
    deliver_at: datetime
    seq: int
    to_node: int = field(compare=False)
    sender: str = field(compare=False)
    kind: str = field(compare=False)  # "request", "decline" or "activity"
    body: str = field(compare=False)


class World:
    def __init__(self, seed: int, directory: Path, faults: Faults | None = None) -> None:
        self.seed = seed
        self.random = random.Random(seed)
        self.directory = directory
        self.faults = faults or Faults()
        self.time = START
        self.nodes: list[Node] = []
        self.network: list[InFlight] = []
        self.keys: dict[str, bytes] = {}
        self.stats: Counter[str] = Counter()
        self._ids = 0
        self._seq = 0
        self.policy = Policy(
            currencies=Currencies(),
            default_credit_limit=lambda _peer, currency: CREDIT_LIMIT[currency],
        )

    def new_id(self, _now: datetime) -> int:
        self._ids += 1
        return self._ids

    # --- set-up --------------------------------------------------------------------------

    async def start(self, node_count: int) -> None:
        for index in range(node_count):
            self.nodes.append(await self._new_node(index))
        for node in self.nodes:
            for user in node.users:
                async with node.engine.begin() as conn:
                    for currency in CURRENCIES:
                        await self._deposit(conn, user, currency, node.now(self.time))

    async def _new_node(self, index: int) -> Node:
        base = f"https://n{index}.test"
        engine = create_async_engine(f"sqlite+aiosqlite:///{self.directory / f'n{index}.db'}")
        event.listen(engine.sync_engine, "connect", _synchronous_full)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        key = NodeKey(f"{base}/actor", f"{base}/actor#ed25519-key", base, self._seed_bytes())
        self.keys[key.key_id] = bytes(SigningKey(key.seed).verify_key)
        users = []
        for number in range(1, USERS_PER_NODE + 1):
            uri = f"{base}/users/u{number}"
            signer = Signer(f"{uri}#ed25519-key", self._seed_bytes())
            self.keys[signer.key_id] = bytes(SigningKey(signer.seed).verify_key)
            users.append(User(number, uri, signer))
        skew = timedelta(seconds=self.random.uniform(-1, 1) * self.faults.max_skew_s)
        window = ACCEPTANCE_WINDOW if index % 2 else timedelta(0)
        return Node(index, key, engine, users, skew, replace(self.policy, acceptance_window=window))

    def _seed_bytes(self) -> bytes:
        return bytes(self.random.getrandbits(8) for _ in range(32))

    async def _deposit(
        self, conn: AsyncConnection, user: User, currency: str, now: datetime
    ) -> None:
        external = await ledger.open_account(
            conn, "external", currency, self.new_id, now, may_go_negative=True
        )
        wallet = await ledger.open_account(
            conn, user_owner(user.account_id), currency, self.new_id, now
        )
        transfer = Transfer(
            f"deposit:{user.uri}:{currency}", Kind.SINGLE, external.id, wallet.id,
            DEPOSIT[currency], currency,
        )  # fmt: skip
        assert (await ledger.apply(conn, transfer, self.new_id, now)).ok

    async def stop(self) -> None:
        for node in self.nodes:
            await node.engine.dispose()

    # --- running -------------------------------------------------------------------------

    async def run(self, steps: int) -> None:
        actions = [
            (self.create_request, 3),
            (self.pay_request, 4),
            (self.send_direct, 2),
            (self.retry_payment, 1),
            (self.decline_or_cancel, 1),
            (self.deliver_one, 10),
            (self.resend, 2),
            (self.answer_held, 2),
            (self.return_untaken, 1),
            (self.advance, 2),
        ]
        functions = [action for action, _ in actions]
        weights = [weight for _, weight in actions]
        for _ in range(steps):
            await self.random.choices(functions, weights)[0]()

    async def quiesce(self, rounds: int = 200) -> None:
        """Make the network reliable and move time on until every offer has its answer."""
        self.faults = Faults(0, 0, 0, self.faults.max_delay_s, self.faults.max_skew_s)
        for _ in range(rounds):
            while self.network:
                await self.deliver_one()
            if not await self._prepared():
                return
            self.time += timedelta(minutes=10)
            for node in self.nodes:
                await self._step(node, lambda conn, now, node=node: self._resend(conn, node, now))
                await self._step(node, lambda conn, now, node=node: self._return(conn, node, now))
        raise AssertionError(f"seed {self.seed}: offers still unanswered after {rounds} rounds")

    async def _prepared(self) -> int:
        count = 0
        for node in self.nodes:
            async with node.engine.connect() as conn:
                rows = await conn.execute(
                    select(settlements.c.id).where(
                        settlements.c.state.in_(
                            [SettlementState.PREPARED.value, SettlementState.HELD.value]
                        )
                    )
                )
                count += len(rows.fetchall())
        return count

    async def _step(self, node: Node, action: Any) -> Any:
        """One transaction on a node; what it sends may be lost if the node crashes after the
        commit and before sending."""
        now = node.now(self.time)
        try:
            async with node.engine.begin() as conn:
                result, messages = await action(conn, now)
        except PaymentError:
            self.stats["refused"] += 1
            return None
        except (SettlementRejected, ProtocolError):
            self.stats["rejected messages"] += 1
            return None
        if self.random.random() < self.faults.crash_after_commit:
            self.stats["crashed before sending"] += 1
            return result
        for message in messages:
            self._send(node, message.to, "activity", message.activity)
        return result

    def _send(self, node: Node, to: str, kind: str, body: dict[str, Any]) -> None:
        if self.random.random() < self.faults.drop:
            self.stats["dropped"] += 1
            return
        copies = 2 if self.random.random() < self.faults.duplicate else 1
        for _ in range(copies):
            self._seq += 1
            delay = timedelta(seconds=self.random.uniform(0, self.faults.max_delay_s))
            self.network.append(
                InFlight(
                    self.time + delay, self._seq, self._node_of(to).index, node.key.actor, kind,
                    json.dumps(body),
                )
            )  # fmt: skip

    def _node_of(self, uri: str) -> Node:
        return next(node for node in self.nodes if uri.startswith(node.key.base_url + "/"))

    # --- actions -------------------------------------------------------------------------

    async def create_request(self) -> None:
        payee_node = self.random.choice(self.nodes)
        payee = self.random.choice(payee_node.users)
        payer_node = self.random.choice(self.nodes)
        payer = self.random.choice(payer_node.users)
        if payer.uri == payee.uri:
            return
        currency = self.random.choice(CURRENCIES)
        scale = self.policy.currencies.get(currency).scale
        amount = wire.Amount(currency, self.random.randint(1, DEPOSIT[currency] // 3), scale)
        lifetime = timedelta(minutes=self.random.choice([1, 3, 10, 60]))

        async def act(conn: AsyncConnection, now: datetime) -> tuple[Any, list[Message]]:
            return await requests.create_request(
                conn, payee_node.key, Party(payee.uri, payee.account_id), payee.signer,
                Party(payer.uri, payer.account_id if payer_node is payee_node else None),
                amount, "dinner", now + lifetime, now, self.new_id,
            ), []  # fmt: skip

        record = await self._step(payee_node, act)
        if record is None:
            return
        self.stats["requests"] += 1
        payee_node.own_requests.append(record.uri)
        if payer_node is payee_node:
            payer_node.known_requests.append(record.uri)
        else:
            self._send(payee_node, payer.uri, "request", record.document)

    async def pay_request(self) -> None:
        node = self.random.choice(self.nodes)
        if not node.known_requests:
            return
        uri = self.random.choice(node.known_requests)
        transfer_uri = f"{node.key.base_url}/payments/transfers/{self.random.getrandbits(64):x}"
        node.transfer_uris.append(transfer_uri)
        await self._pay(node, uri, transfer_uri)

    async def retry_payment(self) -> None:
        """A client repeats a payment with the same idempotency key."""
        node = self.random.choice(self.nodes)
        if not node.transfer_uris:
            return
        transfer_uri = self.random.choice(node.transfer_uris)
        async with node.engine.connect() as conn:
            record = await settlement.settlement_by_uri(conn, transfer_uri)
        if record is not None and record.request_uri is not None:
            await self._pay(node, record.request_uri, transfer_uri)
            self.stats["retried"] += 1

    async def _pay(self, node: Node, request_uri: str, transfer_uri: str) -> None:
        async def act(conn: AsyncConnection, now: datetime) -> tuple[Any, list[Message]]:
            request = await requests.request_by_uri(conn, request_uri)
            assert request is not None
            payer = next(u for u in node.users if u.uri == request.payer_uri)
            return await settlement.pay_request(
                conn, node.key, request, Party(payer.uri, payer.account_id), transfer_uri,
                self.policy, now, self.new_id,
            )  # fmt: skip

        if await self._step(node, act) is not None:
            self.stats["payments"] += 1

    async def send_direct(self) -> None:
        node = self.random.choice(self.nodes)
        payer = self.random.choice(node.users)
        payee_node = self.random.choice(self.nodes)
        payee = self.random.choice(payee_node.users)
        currency = self.random.choice(CURRENCIES)
        scale = self.policy.currencies.get(currency).scale
        amount = wire.Amount(currency, self.random.randint(1, DEPOSIT[currency] // 4), scale)
        transfer_uri = f"{node.key.base_url}/payments/transfers/{self.random.getrandbits(64):x}"

        async def act(conn: AsyncConnection, now: datetime) -> tuple[Any, list[Message]]:
            local = payee.account_id if payee_node is node else None
            return await settlement.send_transfer(
                conn, node.key, Party(payer.uri, payer.account_id), Party(payee.uri, local),
                payee_node.key.actor, amount, transfer_uri, node.policy, now, self.new_id,
            )  # fmt: skip

        if await self._step(node, act) is not None:
            self.stats["direct transfers"] += 1

    async def decline_or_cancel(self) -> None:
        node = self.random.choice(self.nodes)
        if self.random.random() < 0.5 and node.own_requests:
            uri = self.random.choice(node.own_requests)
            await self._end(node, uri, RequestState.CANCELLED)
        elif node.known_requests:
            uri = self.random.choice(node.known_requests)
            if await self._end(node, uri, RequestState.DECLINED):
                self._send(node, uri, "decline", {"object": uri})

    async def _end(self, node: Node, uri: str, target: RequestState) -> bool:
        async def act(conn: AsyncConnection, now: datetime) -> tuple[Any, list[Message]]:
            request = await requests.request_by_uri(conn, uri)
            assert request is not None
            return await requests.end_request(conn, request, target, now), []

        return bool(await self._step(node, act))

    async def resend(self) -> None:
        node = self.random.choice(self.nodes)
        await self._step(node, lambda conn, now: self._resend(conn, node, now))

    async def _resend(
        self, conn: AsyncConnection, node: Node, now: datetime
    ) -> tuple[None, list[Message]]:
        messages = await settlement.resend_due(conn, node.key, now)
        self.stats["resent offers"] += len(messages)
        return None, messages

    async def answer_held(self) -> None:
        """A payee takes money held for them, or sends it back (perhaps too late to take)."""
        node = self.random.choice(self.nodes)
        take = self.random.random() < 0.7

        async def act(conn: AsyncConnection, now: datetime) -> tuple[Any, list[Message]]:
            rows = await conn.execute(
                select(settlements).where(settlements.c.state == SettlementState.HELD.value)
            )
            held = [settlement.settlement_from_row(row) for row in rows]
            if not held:
                return None, []
            record = self.random.choice(held)
            reason = "" if take else "the payee declined it"
            return await settlement.resolve_held(
                conn, node.key, record, take, reason, now, self.new_id
            )

        if await self._step(node, act) is not None:
            self.stats["held taken" if take else "held declined"] += 1

    async def return_untaken(self) -> None:
        node = self.random.choice(self.nodes)
        await self._step(node, lambda conn, now: self._return(conn, node, now))

    async def _return(
        self, conn: AsyncConnection, node: Node, now: datetime
    ) -> tuple[None, list[Message]]:
        messages = []
        for held in await settlement.held_past(conn, now):
            _, sent = await settlement.resolve_held(
                conn, node.key, held, False, "not accepted in time", now, self.new_id
            )
            messages += sent
            self.stats["held returned"] += 1
        return None, messages

    async def advance(self) -> None:
        self.time += timedelta(seconds=self.random.uniform(1, 120))

    async def deliver_one(self) -> None:
        if not self.network:
            return
        ready = sorted(self.network)
        # Reordering: any of the first few due messages may arrive first.
        item = ready[self.random.randrange(min(4, len(ready)))]
        self.network.remove(item)
        self.time = max(self.time, item.deliver_at)
        node = self.nodes[item.to_node]
        body = json.loads(item.body)
        handlers = {
            "request": self._on_request,
            "decline": self._on_decline,
            "activity": self._on_activity,
        }
        await self._step(node, lambda conn, now: handlers[item.kind](conn, node, item, body, now))
        self.stats["delivered"] += 1

    async def _on_request(
        self, conn: AsyncConnection, node: Node, item: InFlight, body: dict, now: datetime
    ) -> tuple[None, list[Message]]:
        payer = next(u for u in node.users if u.uri == body["payer"])
        record = await requests.receive_request(
            conn, body, self.keys, Party(payer.uri, payer.account_id), self.policy, now,
            self.new_id,
        )  # fmt: skip
        if record.uri not in node.known_requests:
            node.known_requests.append(record.uri)
        return None, []

    async def _on_decline(
        self, conn: AsyncConnection, node: Node, item: InFlight, body: dict, now: datetime
    ) -> tuple[None, list[Message]]:
        request = await requests.request_by_uri(conn, body["object"])
        if request is not None and request.is_ours:
            await requests.end_request(conn, request, RequestState.DECLINED, now)
        return None, []

    async def _on_activity(
        self, conn: AsyncConnection, node: Node, item: InFlight, body: dict, now: datetime
    ) -> tuple[None, list[Message]]:
        if body["type"] == "Offer":

            async def payee_account(uri: str) -> int | None:
                return next((u.account_id for u in node.users if u.uri == uri), None)

            messages = await settlement.offer_received(
                conn, node.key, body, item.sender, self.keys, payee_account, node.policy, now,
                self.new_id,
            )  # fmt: skip
            return None, messages
        await settlement.decision_received(conn, body, item.sender, self.keys, now, self.new_id)
        return None, []

    # --- invariants ----------------------------------------------------------------------

    async def check(self) -> list[str]:
        """Every invariant of reference §6.8 that the databases can show; empty if all hold."""
        problems: list[str] = []
        users: Counter[str] = Counter()
        peer: dict[tuple[int, int, str], int] = {}
        rows: dict[int, list[Any]] = {}
        for node in self.nodes:
            async with node.engine.connect() as conn:
                problems += [f"n{node.index}: {p}" for p in await ledger.audit(conn)]
                problems += [f"n{node.index}: {p}" for p in await settlement.audit(conn)]
                if await ledger.unresolved_pending(conn):
                    problems.append(f"n{node.index}: reservations still pending at quiescence")
                for account in await ledger.all_accounts(conn):
                    if account.owner.startswith("user:"):
                        users[account.currency] += account.balance
                    elif account.owner.startswith("peer:"):
                        other = self._node_of(f"https://{account.owner[5:]}/").index
                        peer[(node.index, other, account.currency)] = account.balance
                rows[node.index] = (await conn.execute(select(settlements))).fetchall()
                problems += await self._check_requests(node, conn)
        for currency in CURRENCIES:
            deposited = DEPOSIT[currency] * USERS_PER_NODE * len(self.nodes)
            if users[currency] != deposited:
                problems.append(f"{currency}: users hold {users[currency]}, {deposited} went in")
        for (a, b, currency), balance in peer.items():
            if balance + peer.get((b, a, currency), 0) != 0:
                problems.append(f"n{a}/n{b} {currency}: payable and receivable differ")
        problems += self._check_settlements(rows)
        for node_rows in rows.values():
            self.stats.update(f"{row.role} {row.state}" for row in node_rows)
        return problems

    def _check_settlements(self, rows: dict[int, list[Any]]) -> list[str]:
        problems = []
        payee_side = {
            r.uri: r for node_rows in rows.values() for r in node_rows if r.role == "payee"
        }
        payer_side = {
            r.uri: r for node_rows in rows.values() for r in node_rows if r.role == "payer"
        }
        expected = {"posted": "accepted", "voided": "rejected"}
        for uri, payer in payer_side.items():
            payee = payee_side.get(uri)
            if payer.state not in expected:
                problems.append(f"{uri} is {payer.state} on the payer's node")
            elif payee is None or payee.state != expected[payer.state]:
                state = payee.state if payee else "unknown"
                problems.append(f"{uri}: {payer.state} by the payer, {state} by the payee")
        for uri in payee_side.keys() - payer_side.keys():
            problems.append(f"{uri} exists on the payee's node only")
        for row in (r for node_rows in rows.values() for r in node_rows):
            if row.state in ("accepted", "posted") and row.role != "payer":
                decided_at = row.decided_at.replace(tzinfo=UTC)
                if decided_at >= row.expires_at.replace(tzinfo=UTC):
                    problems.append(f"{row.uri} was accepted after it expired")
        return problems

    async def _check_requests(self, node: Node, conn: AsyncConnection) -> list[str]:
        problems = []
        requests = (
            await conn.execute(
                select(payment_requests).where(payment_requests.c.fulfillment.is_not(None))
            )
        ).fetchall()
        accepted = Counter(
            row.request_uri
            for row in await conn.execute(
                select(settlements).where(settlements.c.state.in_(["accepted", "posted"]))
            )
            if row.role != "payer"
        )
        for request in requests:
            paid = accepted.get(request.uri, 0)
            if paid > 1 or (paid == 1) != (request.state == "paid"):
                problems.append(f"{request.uri} is {request.state} with {paid} payments")
            fulfillment = request.fulfillment
            if condition_of(_decode(fulfillment)) != request.condition:
                problems.append(f"{request.uri}: its fulfillment does not match its condition")
        for row in await conn.execute(
            select(settlements).where(settlements.c.fulfillment.is_not(None))
        ):
            transfer = json.loads(row.transfer)
            if not fulfills(row.fulfillment, transfer.get("condition", "")):
                problems.append(f"{row.uri}: its fulfillment does not unlock its condition")
        return problems


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _synchronous_full(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=FULL")


async def simulate(seed: int, directory: Path, steps: int = 400, nodes: int = 3) -> World:
    """Run one seeded federation to quiescence; raises AssertionError naming the seed."""
    world = World(seed, directory)
    await world.start(nodes)
    try:
        await world.run(steps)
        await world.quiesce()
        problems = await world.check()
        if problems:
            raise AssertionError(f"seed {seed}: " + "; ".join(problems[:20]))
        return world
    finally:
        await world.stop()
