"""One node as several `kith serve` processes on one PostgreSQL database: a web process and
two worker processes.

The web process stores what arrives and queues what its users do; the workers, woken by
NOTIFY, apply the inbox and deliver, each delivery exactly once; what a worker commits reaches
the clients streaming from the web process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from federation.tables import deliveries, inbox_items
from server.config import DatabaseConfig
from server.identity.accounts import create_account
from server.identity.keys import generate_actor_keys
from server.identity.tokens import DEFAULT_SCOPES, create_token, parse_scopes
from server.storage.engine import create_database
from server.wakeups import Wakeups
from tests.databases import DatabaseFactory, postgres_url
from tests.federation.fake_peer import Peer, RemoteUser, _start_peer, new_rsa_key, sign_cavage
from tests.federation.test_payments import Pair, _statements, pair, settled  # noqa: F401
from tests.integration.test_serve_process import _free_port, _wait_healthy

KITH = str(Path(sys.executable).parent / "kith")
PEERS = 6
USERS_PER_PEER = 5  # 30 followers, each with an inbox of its own
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        postgres_url() is None, reason="web and worker processes share a database on PostgreSQL"
    ),
]


@dataclass(eq=False)
class LoneUser(RemoteUser):
    """A remote user with no shared inbox: every delivery to it goes to its own inbox."""

    def document(self) -> dict[str, Any]:
        document = super().document()
        del document["endpoints"]
        return document


@dataclass
class Processes:
    """The `kith serve` processes of one node, logging to files in `directory`."""

    directory: Path
    env: dict[str, str]
    running: list[tuple[str, asyncio.subprocess.Process]]

    async def start(self, name: str, *argv: str, health: str) -> None:
        with (self.directory / f"{name}.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                KITH, "serve", *argv, cwd=self.directory, env=self.env, stdout=log, stderr=log
            )
        self.running.append((name, process))
        await _wait_healthy(health, process)

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM each; their exit statuses (None: killed after ten seconds)."""
        codes: dict[str, int | None] = {}
        for _, process in self.running:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.running:
            try:
                codes[name] = await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
                codes[name] = None
        return codes

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}"
            for path in sorted(self.directory.glob("*.log"))
        )


def _env(database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITH_")}
    env.update(
        {
            "KITH_DATABASE__URL": database_url,
            "KITH_DATABASE__POOL_SIZE": "4",
            "KITH_SERVER__HOST": "127.0.0.1",
            "KITH_SERVER__PORT": str(port),
            "KITH_INSTANCE__DOMAIN": f"127.0.0.1:{port}",
            "KITH_INSTANCE__BASE_URL": f"http://127.0.0.1:{port}",
            "KITH_FEDERATION__ALLOW_PRIVATE_ADDRESSES": "true",
        }
    )
    return env


async def _alice_with_token(database_url: str) -> str:
    db = create_database(database_url, DatabaseConfig(pool_size=1))
    keys = await asyncio.to_thread(generate_actor_keys)
    now = datetime.now(UTC)
    try:
        async with db.transaction() as conn:
            account = await create_account(conn, "alice", keys, now)
            return await create_token(
                conn, account.id, parse_scopes(" ".join(DEFAULT_SCOPES)), "t", now
            )
    finally:
        await db.dispose()


async def _count(database_url: str, query: Any) -> int:
    db = create_database(database_url, DatabaseConfig(pool_size=1))
    try:
        async with db.read() as conn:
            return (await conn.execute(query)).scalar_one()
    finally:
        await db.dispose()


async def _followers(stack: AsyncExitStack) -> tuple[list[Peer], list[RemoteUser]]:
    key = new_rsa_key()  # one key for all: generating thirty takes seconds
    peers = [await _start_peer(stack, "127.0.0.1") for _ in range(PEERS)]
    users: list[RemoteUser] = []
    for peer in peers:
        for n in range(USERS_PER_PEER):
            user = LoneUser(peer, f"follower{n}", key=key)
            peer.users[user.name] = user
            users.append(user)
    return peers, users


async def _follow(http: aiohttp.ClientSession, host: Any, user: RemoteUser, alice: str) -> None:
    follow = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{user.actor}/follows/alice",
        "type": "Follow",
        "actor": user.actor,
        "object": alice,
    }
    body = json.dumps(follow).encode()
    path = "/users/alice/inbox"
    headers = sign_cavage(user, host, path, body, datetime.now(UTC))
    async with http.post(path, data=body, headers=headers) as answer:
        assert answer.status == 202, await answer.text()


def _posts_by_inbox(peers: list[Peer]) -> Counter[tuple[str, str, str]]:
    """(inbox, activity type, activity id) of every POST the peers received, counted."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for peer in peers:
        for _, path, _, body in peer.posts():
            activity = json.loads(body)
            counted[(peer.url(path), activity["type"], activity["id"])] += 1
    return counted


async def _until(check: Any, timeout_s: float = 20.0) -> float:
    """Wait for `check()` to hold; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not check():
        if loop.time() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.02)
    return loop.time() - started


async def _follow_notifications(socket: aiohttp.ClientWebSocketResponse, count: int) -> set[str]:
    followers: set[str] = set()
    while len(followers) < count:
        message = await asyncio.wait_for(socket.receive(), 20)
        event = json.loads(message.data)
        if event["event"] == "notification":
            notification = json.loads(event["payload"])
            if notification["type"] == "follow":
                followers.add(notification["account"]["acct"])
    return followers


async def test_a_web_and_two_worker_processes_deliver_each_activity_exactly_once(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    database_url = await databases.new("split", migrated=True)
    token = await _alice_with_token(database_url)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    alice = f"{base}/users/alice"
    processes = Processes(tmp_path, _env(database_url, port), [])
    async with AsyncExitStack() as stack:
        peers, users = await _followers(stack)
        try:
            await processes.start("web", "--role", "web", health=f"{base}/healthz")
            http = await stack.enter_async_context(aiohttp.ClientSession(base_url=base))
            socket = await stack.enter_async_context(
                http.ws_connect(f"/api/v1/streaming?access_token={token}&stream=user")
            )
            host = type("Host", (), {"domain": f"127.0.0.1:{port}"})()
            await asyncio.gather(*(_follow(http, host, user, alice) for user in users))

            # The web process stores the follows and applies none of them.
            await asyncio.sleep(1.5)
            queued = select(func.count()).where(inbox_items.c.state == "queued")
            assert await _count(database_url, queued) == len(users)
            assert _posts_by_inbox(peers) == Counter()

            # Two workers start: they apply the follows (each answered with one Accept) and
            # the web process's stream hears of each follow they applied.
            started = asyncio.get_running_loop().time()
            workers, health_ports = [], []
            for name in ("worker1", "worker2"):
                health = _free_port()
                health_ports.append(health)
                workers.append(
                    processes.start(
                        name,
                        *("--role", "worker", "--health-port", str(health)),
                        health=f"http://127.0.0.1:{health}/healthz",
                    )
                )
            await asyncio.gather(*workers)
            heard = await _follow_notifications(socket, len(users))
            assert len(heard) == len(users)
            await _until(lambda: len(_posts_by_inbox(peers)) == len(users))
            accepted = asyncio.get_running_loop().time() - started

            # A post from the web process: the workers deliver it to every follower's inbox.
            posted_at = asyncio.get_running_loop().time()
            async with http.post(
                "/api/v1/statuses",
                json={"status": "hello, everyone"},
                headers={"Authorization": f"Bearer {token}"},
            ) as answer:
                assert answer.status == 200, await answer.text()
            delivered_s = await _until(lambda: len(_posts_by_inbox(peers)) == 2 * len(users))
            print(
                f"\n{len(users)} follows applied and accepted {accepted:.2f} s after the "
                f"workers started; the post reached {len(users)} inboxes in "
                f"{delivered_s * 1000:.0f} ms (from {posted_at - started:.2f} s)"
            )
            await asyncio.sleep(1.5)  # time for a duplicate to show up, if any

            received = _posts_by_inbox(peers)
            assert set(received.values()) == {1}, "an activity was delivered twice"
            by_inbox = Counter(inbox for inbox, _, _ in received)
            assert set(by_inbox) == {f"{user.actor}/inbox" for user in users}
            assert set(by_inbox.values()) == {2}
            assert Counter(kind for _, kind, _ in received) == {
                "Accept": len(users),
                "Create": len(users),
            }
            attempted_more = select(func.count()).where(
                (deliveries.c.state != "delivered") | (deliveries.c.attempts != 1)
            )
            assert await _count(database_url, attempted_more) == 0
            # Each worker serves its own metrics: together they count every delivery once.
            delivered = 0
            for port in health_ports:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
                    assert answer.status == 200, await answer.text()
                    delivered += _delivered(await answer.text())
            assert delivered == 2 * len(users)
        except BaseException:
            print(processes.logs())
            raise
        finally:
            codes = await processes.stop()
    assert codes == {"web": 0, "worker1": 0, "worker2": 0}, processes.logs()


def _delivered(metrics: str) -> int:
    """Successful deliveries in a Prometheus text page."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("kith_deliveries_total{") and 'outcome="delivered"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def _wait_set(event: asyncio.Event, timeout_s: float = 5.0) -> None:
    await asyncio.wait_for(event.wait(), timeout_s)


async def test_work_queued_in_one_process_wakes_the_workers_of_another(
    databases: DatabaseFactory,
) -> None:
    url = await databases.new("wakeups")
    web_db = create_database(url, DatabaseConfig(pool_size=1))
    worker_db = create_database(url, DatabaseConfig(pool_size=1))
    web_events = {"inbox": asyncio.Event(), "delivery": asyncio.Event()}
    worker_events = {"inbox": asyncio.Event(), "delivery": asyncio.Event()}
    web = Wakeups(web_db, web_events["inbox"], web_events["delivery"])
    worker = Wakeups(worker_db, worker_events["inbox"], worker_events["delivery"])
    tasks = [asyncio.create_task(web.run(listen=False)), asyncio.create_task(worker.run(True))]
    try:
        # Listening, the worker looks for work it may have missed.
        await _wait_set(worker_events["delivery"])
        await _wait_set(worker_events["inbox"])
        for event in (*web_events.values(), *worker_events.values()):
            event.clear()

        web.delivery_queued()
        await _wait_set(worker_events["delivery"], 0.9)  # sooner than the workers' poll
        assert not worker_events["inbox"].is_set()
        web.inbox_stored()
        await _wait_set(worker_events["inbox"], 0.9)

        # A web process listens to nobody; a worker's own wake-ups stay its own.
        for event in (*web_events.values(), worker_events["inbox"]):
            event.clear()
        worker.delivery_queued()
        await asyncio.sleep(0.3)
        assert not any(event.is_set() for event in web_events.values())
        assert not worker_events["inbox"].is_set()

        # Connections dropped by the server are opened again.
        await _terminate_other_connections(url)
        for event in worker_events.values():
            event.clear()
        await _wait_set(worker_events["inbox"])  # listening again: it looked for work
        worker_events["delivery"].clear()
        web.delivery_queued()
        await _wait_set(worker_events["delivery"])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await web_db.dispose()
        await worker_db.dispose()


async def _terminate_other_connections(url: str) -> None:
    connection = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()


async def test_workers_proposing_statements_at_once_send_one(pair: Pair) -> None:  # noqa: F811
    """Two worker processes' expiry loops meet: one statement is proposed, not two."""
    issuer, _ = sorted((pair.a, pair.b), key=lambda n: n.config.base_url + "/actor")
    sent = await pair.alice.post(
        "/api/kith/v1/transfers", to=pair.bob_handle, amount="3.00", currency="EUR"
    )
    assert (await settled(pair.alice, sent.body["id"]))["state"] == "completed"
    for node in (pair.a, pair.b):
        node.clock.advance(minutes=11)
    propose = issuer.federation.payments.propose_due
    await asyncio.gather(*(issuer.perform(propose) for _ in range(4)))
    assert [role for role, _, _ in await _statements(issuer)] == ["issuer"]
