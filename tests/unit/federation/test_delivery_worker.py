"""The delivery worker against a real database and a real (local) inbox server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from federation.delivery import BATCHES_IN_FLIGHT, DeliveryWorker, backoff, enqueue
from federation.dispatch import PRIORITY_DIRECT, Outbound
from federation.fetch import FetchPolicy, create_session
from federation.tables import deliveries, hosts
from federation.worker import sweep_finished
from protocol.httpsig import HttpRequest, parse_signature, verify
from server.config import load_config
from server.node import open_database
from server.storage.engine import Database
from server.storage.ids import new_id
from tests.databases import DatabaseFactory
from tests.harness import FakeClock, eventually

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
POLICY = FetchPolicy(allow_private_addresses=True, allow_http=True)


class Inbox:
    """A peer's inbox answering with scripted statuses, remembering what it received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.received: list[HttpRequest] = []
        self.url = ""
        self.delay_s = 0.0  # a slow server: it records a request, then takes this long

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(HttpRequest("POST", self.url, list(request.headers.items()), body))
        await asyncio.sleep(self.delay_s)
        status, headers = self.answers.pop(0) if self.answers else (202, {})
        return web.Response(status=status, headers=headers)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    peer = Inbox()
    app = web.Application()
    app.router.add_post("/inbox", peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peer.url = f"http://127.0.0.1:{port}/inbox"
    yield peer
    await runner.cleanup()


@pytest.fixture
async def db(databases: DatabaseFactory, tmp_path) -> AsyncIterator[Database]:
    config = load_config(
        None, environ={}, overrides={"database.url": await databases.new()}, cwd=tmp_path
    )
    database = await open_database(config, initialize_empty=True)
    yield database
    await database.dispose()


async def _signing_keys(_actor: str, _algorithm: str = "rsa") -> tuple[str, rsa.RSAPrivateKey]:
    return "https://kith.example/users/alice#main-key", KEY


async def _queue(db: Database, inbox: Inbox, clock: FakeClock) -> None:
    activity = {"id": "https://kith.example/activities/1", "type": "Create", "actor": "x"}
    outbound = Outbound(activity, "https://kith.example/users/alice", (), inboxes=(inbox.url,))
    async with db.transaction() as conn:
        assert await enqueue(conn, outbound, new_id, clock()) == 1
        assert await enqueue(conn, outbound, new_id, clock()) == 0  # once per inbox


async def _row(db: Database):
    async with db.read() as conn:
        return (await conn.execute(select(deliveries))).one()


async def _worker(db: Database, clock: FakeClock):
    return DeliveryWorker(db, create_session(POLICY), POLICY, _signing_keys, clock)


async def test_a_delivery_is_signed_and_marked_delivered(db: Database, inbox: Inbox) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue(db, inbox, clock)
    worker = await _worker(db, clock)
    async with worker.session:
        assert await worker.deliver_due() == 1
    (request,) = inbox.received
    verify(parse_signature(request), KEY.public_key(), clock())
    row = await _row(db)
    assert (row.state, row.attempts, row.last_status) == ("delivered", 1, 202)


@pytest.mark.parametrize("status", [500, 502, 401, 408, 429])
async def test_temporary_failures_are_retried_later(
    db: Database, inbox: Inbox, status: int
) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue(db, inbox, clock)
    knocks = 2 if status == 401 else 1  # a 401 gets a second knock with RFC 9421
    inbox.answers += [(status, {})] * knocks
    worker = await _worker(db, clock)
    async with worker.session:
        await worker.deliver_due()
        row = await _row(db)
        assert (row.state, row.attempts) == ("queued", 1)
        assert await worker.deliver_due() == 0  # not due yet
        clock.advance(seconds=60)
        assert await worker.deliver_due() == 1
    assert (await _row(db)).state == "delivered"


@pytest.mark.parametrize("status", [400, 403, 404, 410, 422])
async def test_other_client_errors_give_up_at_once(db: Database, inbox: Inbox, status: int) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue(db, inbox, clock)
    inbox.answers += [(status, {}), (status, {})]
    worker = await _worker(db, clock)
    async with worker.session:
        await worker.deliver_due()
    row = await _row(db)
    assert (row.state, row.last_status) == ("failed", status)


async def test_retry_after_is_honoured(db: Database, inbox: Inbox) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue(db, inbox, clock)
    inbox.answers.append((429, {"Retry-After": "600"}))
    worker = await _worker(db, clock)
    async with worker.session:
        await worker.deliver_due()
    row = await _row(db)
    wait = row.next_attempt_at.replace(tzinfo=UTC) - clock()
    assert timedelta(seconds=599) <= wait <= timedelta(seconds=601)


async def test_a_host_that_only_takes_rfc9421_gets_a_second_knock_and_is_remembered(
    db: Database, inbox: Inbox
) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue(db, inbox, clock)
    inbox.answers.append((401, {}))
    worker = await _worker(db, clock)
    async with worker.session:
        await worker.deliver_due()
    first, second = inbox.received
    assert first.header("signature-input") is None
    assert second.header("signature-input") is not None
    assert (await _row(db)).state == "delivered"
    async with db.read() as conn:
        scheme = (await conn.execute(select(hosts.c.signature_scheme))).scalar_one()
    assert scheme == "rfc9421"


def test_backoff_grows_like_mastodons_and_totals_about_two_days() -> None:
    assert timedelta(seconds=15) <= backoff(0) <= timedelta(seconds=23)
    total = sum((backoff(n) for n in range(16)), timedelta())
    assert timedelta(days=2) <= total <= timedelta(days=3.2)


async def test_finished_work_is_swept_after_the_retention_period(
    db: Database, inbox: Inbox
) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue(db, inbox, clock)
    worker = await _worker(db, clock)
    async with worker.session:
        await worker.deliver_due()
    assert await sweep_finished(db, clock() - timedelta(days=7)) == (0, 0)
    assert await sweep_finished(db, clock() + timedelta(seconds=1)) == (0, 1)
    async with db.read() as conn:
        assert (await conn.execute(select(deliveries))).all() == []


ED_KEY = Ed25519PrivateKey.generate()


async def _both_keys(_actor: str, algorithm: str = "rsa") -> tuple[str, object]:
    if algorithm == "ed25519":
        return "https://kith.example/actor#ed25519-key", ED_KEY
    return "https://kith.example/actor#main-key", KEY


async def _queue_question(db: Database, inbox: Inbox, clock: FakeClock) -> None:
    offer = {"id": "https://kith.example/offers/1", "type": "Offer", "actor": "x"}
    question = Outbound(offer, "https://kith.example/actor", (), inboxes=(inbox.url,))
    async with db.transaction() as conn:
        await enqueue(conn, replace(question, wants_answer=True), new_id, clock())


async def test_a_question_to_a_kith_node_is_signed_with_ed25519_and_asks_for_an_answer(
    db: Database, inbox: Inbox
) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue_question(db, inbox, clock)
    worker = DeliveryWorker(db, create_session(POLICY), POLICY, _both_keys, clock)
    async with worker.session:
        assert await worker.deliver_due() == 1
    (request,) = inbox.received
    signature = parse_signature(request)
    assert signature.algorithm == "ed25519"
    verify(signature, ED_KEY.public_key(), clock())
    assert request.header("prefer") == "return=representation"
    assert (await _row(db)).state == "delivered"


async def test_a_peer_that_refuses_ed25519_signatures_gets_the_usual_rsa_knock(
    db: Database, inbox: Inbox
) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue_question(db, inbox, clock)
    inbox.answers.append((401, {}))
    worker = DeliveryWorker(db, create_session(POLICY), POLICY, _both_keys, clock)
    async with worker.session:
        assert await worker.deliver_due() == 1
    first, second = inbox.received
    assert parse_signature(first).algorithm == "ed25519"  # refused: the RSA knock follows
    verify(parse_signature(second), KEY.public_key(), clock())
    assert (await _row(db)).state == "delivered"


async def test_a_direct_delivery_goes_out_while_bulk_batches_take_every_batch_slot(
    db: Database, inbox: Inbox
) -> None:
    clock = FakeClock(datetime.now(UTC))
    inbox.delay_s = 3  # the bulk does not finish during the test
    async with db.transaction() as conn:
        for n in range(BATCHES_IN_FLIGHT * 2 + 2):
            activity = {"id": f"https://kith.example/activities/{n}", "type": "Create"}
            bulk = Outbound(activity, "https://kith.example/users/alice", (), inboxes=(inbox.url,))
            await enqueue(conn, bulk, new_id, clock())
    wake = asyncio.Event()
    worker = DeliveryWorker(
        db, create_session(POLICY), POLICY, _signing_keys, clock, batch=2, wake=wake
    )
    async with worker.session:
        for _ in range(BATCHES_IN_FLIGHT):
            assert await worker.start_due() == 2
        async with asyncio.timeout(5):  # every bulk batch slot is taken: it does not wait
            assert await worker.start_due() == 0
        message = {"id": "https://kith.example/activities/dm", "type": "Create"}
        direct = Outbound(message, "https://kith.example/users/alice", (), PRIORITY_DIRECT)
        async with db.transaction() as conn:
            await enqueue(conn, replace(direct, inboxes=(inbox.url,)), new_id, clock())
        assert await worker.start_due() == 1

        async def arrived() -> bool:
            return any(b"activities/dm" in r.body for r in inbox.received)

        await eventually(arrived, timeout_s=5)
        await worker.stop()
    # Four bulk deliveries at once to the one host (its cap), and the direct one beside them.
    assert len(inbox.received) == 4 + 1


async def test_a_finished_batch_wakes_the_delivery_loop(db: Database, inbox: Inbox) -> None:
    clock = FakeClock(datetime.now(UTC))
    await _queue(db, inbox, clock)
    wake = asyncio.Event()
    worker = DeliveryWorker(db, create_session(POLICY), POLICY, _signing_keys, clock, wake=wake)
    async with worker.session:
        assert await worker.start_due() == 1
        async with asyncio.timeout(5):
            await wake.wait()
    assert (await _row(db)).state == "delivered"
