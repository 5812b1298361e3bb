"""Time for one local post to reach every follower's server: 1,000 followers on 100 hosts.

Run: python bench/fanout.py [--hosts 100] [--followers-per-host 10] [--runs 5]

The node runs in this process (pinned to one CPU) with SQLite in a temporary directory and
the real clock. Another process (pinned to the other CPU) runs one tiny aiohttp inbox server
per host on its own loopback port. The followers are written straight into the node's
database (remote accounts, their actors with a shared inbox per host, accepted follows) instead
of being made by real Follow exchanges; the post itself goes the real way: `Federation.perform`
with `publish_status`, then the delivery worker signs and POSTs one Create per shared inbox.
Each run publishes a new post and measures, from just before `perform` to the moment the last
host received its Create, the fan-out time; then the time until the node recorded every
delivery. The first post is reported apart (cold: private key load, new connections); the
summary is the median of the others. Every host must have received exactly one Create, whose
HTTP signature is verified against the author's public key. The RSA-2048 sign bound is
measured on the node's CPU in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiohttp import web
from common import (
    BenchNode,
    free_listener,
    pin,
    rsa_sign_rate,
    split_cpus,
    start_node,
    verdict,
)
from sqlalchemy import func, insert, select

from federation.tables import deliveries, remote_actors
from protocol.httpsig import (
    HttpRequest,
    SignatureError,
    load_public_key_pem,
    parse_signature,
    verify,
)
from server.identity.accounts import Account, create_account
from server.identity.keys import generate_actor_keys
from server.social.posting import publish_status
from server.storage.ids import new_id
from server.storage.tables import accounts, follows

TARGET_SECONDS = 2.0
TEXT = "Fan-out benchmark: one post, every follower's server, as fast as the node can sign. "


# --- the other process: the followers' servers ------------------------------------------------


class Hosts:
    """Inbox servers, one per port; reports when every host has received a Create."""

    def __init__(self, pipe: Connection, count: int) -> None:
        self.pipe = pipe
        self.count = count
        self.received: list[dict[str, Any]] = []
        self.hosts_with_create: set[int] = set()
        self.last_arrival = 0.0
        self.complete = asyncio.Event()

    def app(self, index: int) -> web.Application:
        async def inbox(request: web.Request) -> web.Response:
            body = await request.read()
            arrival = time.monotonic()
            self.received.append(
                {
                    "host": index,
                    "path": request.path_qs,
                    "headers": list(request.headers.items()),
                    "body": body,
                    "at": arrival,
                }
            )
            try:
                is_create = json.loads(body).get("type") == "Create"
            except ValueError:
                is_create = False
            if is_create and index not in self.hosts_with_create:
                self.hosts_with_create.add(index)
                self.last_arrival = arrival
                if len(self.hosts_with_create) == self.count:
                    self.complete.set()
            return web.Response(status=202)

        app = web.Application()
        app.router.add_post("/inbox", inbox)
        app.router.add_post("/users/{name}/inbox", inbox)
        return app

    async def run(self) -> None:
        runners, ports = [], []
        for index in range(self.count):
            listener = free_listener()
            ports.append(listener.getsockname()[1])
            runner = web.AppRunner(self.app(index), access_log=None)
            await runner.setup()
            await web.SockSite(runner, listener).start()
            runners.append(runner)
        self.pipe.send(("ports", ports))
        try:
            while True:
                message = await asyncio.to_thread(self.pipe.recv)
                if message[0] == "reset":
                    self.received, self.hosts_with_create = [], set()
                    self.complete.clear()
                    self.pipe.send(("reset", None))
                elif message[0] == "wait":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.complete.wait(), message[1])
                    done = self.complete.is_set()
                    self.pipe.send(("arrived", (done, self.last_arrival, self.received)))
                elif message[0] == "stop":
                    break
        finally:
            for runner in runners:
                await runner.cleanup()


def hosts_main(pipe: Connection, cpu: int | None, count: int) -> None:
    """Entry point of the followers' servers process."""
    pin(cpu)
    asyncio.run(Hosts(pipe, count).run())


# --- this process: the node ----------------------------------------------------------------


async def receive(pipe: Connection, expected: str) -> Any:
    message = await asyncio.to_thread(pipe.recv)
    if message[0] != expected:
        raise RuntimeError(f"expected {expected!r} from the hosts process, got {message!r}")
    return message[1]


async def create_author(node: BenchNode) -> tuple[Account, str]:
    """The local author and its RSA public key PEM."""
    keys = await asyncio.to_thread(generate_actor_keys)
    async with node.db.transaction() as conn:
        author = await create_account(conn, "author", keys, datetime.now(UTC))
    return author, keys.rsa_public_pem


async def add_followers(node: BenchNode, author: Account, ports: list[int], per_host: int) -> int:
    """Remote followers written straight into the database, `per_host` on each host."""
    now = datetime.now(UTC)
    account_rows, actor_rows, follow_rows = [], [], []
    for port in ports:
        base = f"http://127.0.0.1:{port}"
        for serial in range(per_host):
            name = f"follower{serial}"
            uri = f"{base}/users/{name}"
            account_id = new_id(now)
            document = {
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": uri,
                "type": "Person",
                "preferredUsername": name,
                "inbox": f"{uri}/inbox",
                "followers": f"{uri}/followers",
                "endpoints": {"sharedInbox": f"{base}/inbox"},
            }
            account_rows.append(
                {
                    "id": account_id,
                    "username": name,
                    "username_key": name,
                    "domain": f"127.0.0.1:{port}",
                    "uri": uri,
                    "url": f"{base}/@{name}",
                    "followers_url": f"{uri}/followers",
                    "also_known_as": "[]",
                    "fetched_at": now,
                    "actor_type": "Person",
                    "is_instance_actor": False,
                    "display_name": name,
                    "note": "",
                    "is_locked": False,
                    "is_discoverable": True,
                    "is_indexable": False,
                    "is_admin": False,
                    "created_at": now,
                }
            )
            actor_rows.append(
                {
                    "id": new_id(now),
                    "uri": uri,
                    "host": f"127.0.0.1:{port}",
                    "inbox_url": f"{uri}/inbox",
                    "shared_inbox_url": f"{base}/inbox",
                    "document": json.dumps(document),
                    "fetched_at": now,
                }
            )
            follow_rows.append(
                {
                    "id": new_id(now),
                    "account_id": account_id,
                    "target_account_id": author.id,
                    "state": "accepted",
                    "show_reblogs": True,
                    "notify": False,
                    "uri": f"{uri}#follows/{author.id}",
                    "created_at": now,
                }
            )
    async with node.db.transaction() as conn:
        await conn.execute(insert(accounts), account_rows)
        await conn.execute(insert(remote_actors), actor_rows)
        await conn.execute(insert(follows), follow_rows)
    return len(follow_rows)


async def delivery_states(node: BenchNode, activity_id: str) -> Counter[str]:
    async with node.db.read() as conn:
        rows = await conn.execute(
            select(deliveries.c.state, func.count())
            .where(deliveries.c.activity_id == activity_id)
            .group_by(deliveries.c.state)
        )
        return Counter({row[0]: row[1] for row in rows})


def check_deliveries(
    received: list[dict[str, Any]], hosts: list[int], activity_id: str, public_pem: str
) -> tuple[list[str], int]:
    """Problems found (empty when every host got exactly one validly signed Create)."""
    problems: list[str] = []
    public_key = load_public_key_pem(public_pem)
    creates: Counter[int] = Counter()
    verified = 0
    for item in received:
        activity = json.loads(item["body"])
        if activity.get("type") != "Create" or activity.get("id") != activity_id:
            problems.append(f"host {item['host']} got {activity.get('type')} {activity.get('id')}")
            continue
        creates[item["host"]] += 1
        if item["path"] != "/inbox":
            problems.append(f"host {item['host']}: POST to {item['path']}, not the shared inbox")
        url = f"http://127.0.0.1:{hosts[item['host']]}{item['path']}"
        request = HttpRequest("POST", url, item["headers"], item["body"])
        try:
            verify(parse_signature(request), public_key, datetime.now(UTC))
            verified += 1
        except SignatureError as exc:
            problems.append(f"host {item['host']}: signature does not verify: {exc}")
    missing = [i for i in range(len(hosts)) if creates[i] == 0]
    repeated = [i for i, n in creates.items() if n > 1]
    if missing:
        problems.append(f"{len(missing)} hosts received no Create (e.g. host {missing[0]})")
    if repeated:
        problems.append(f"{len(repeated)} hosts received the Create more than once")
    return problems, verified


async def one_post(
    node: BenchNode,
    pipe: Connection,
    author: Account,
    public_pem: str,
    ports: list[int],
    serial: int,
) -> dict[str, Any]:
    pipe.send(("reset",))
    await receive(pipe, "reset")
    cpu = time.process_time()
    start = time.monotonic()
    status = await node.federation.perform(
        lambda conn, now: publish_status(
            conn, node.urls, author, f"{TEXT} #{serial}", now, visibility="public"
        )
    )
    queued_s = time.monotonic() - start
    pipe.send(("wait", 60.0))
    complete, last_arrival, received = await receive(pipe, "arrived")
    activity_id = f"{status.uri}/activity"
    while (states := await delivery_states(node, activity_id))["queued"]:
        if time.monotonic() - start > 90:
            break
        await asyncio.sleep(0.002)
    recorded_s = time.monotonic() - start
    cpu = time.process_time() - cpu
    problems, verified = check_deliveries(received, ports, activity_id, public_pem)
    if not complete:
        problems.append("not every host received the Create within 60 s")
    fanout_s = last_arrival - start if complete else float("nan")
    return {
        "queued_s": queued_s,
        "fanout_s": fanout_s,
        "recorded_s": recorded_s,
        "per_s": len(ports) / fanout_s,
        "posts": len(received),
        "verified": verified,
        "states": dict(states),
        "cpu_ms": cpu * 1000,
        "problems": problems,
    }


HEADER = (
    f"{'post':>4} {'kind':>5} {'queued ms':>10} {'all hosts s':>12} {'recorded s':>11} "
    f"{'deliveries/s':>13} {'POSTs':>6} {'sig ok':>7} {'node CPU ms':>12}"
)


def print_row(run: int, row: dict[str, Any]) -> None:
    kind = "cold" if run == 0 else "warm"
    print(
        f"{run + 1:>4} {kind:>5} {row['queued_s'] * 1000:>10.1f} {row['fanout_s']:>12.3f} "
        f"{row['recorded_s']:>11.3f} {row['per_s']:>13,.0f} {row['posts']:>6} "
        f"{row['verified']:>7} {row['cpu_ms']:>12.0f}"
    )
    for problem in row["problems"][:5]:
        print(f"     PROBLEM: {problem}")


async def measure(args: argparse.Namespace) -> None:
    server_cpu, load_cpu = split_cpus()
    pin(server_cpu)
    if server_cpu is None:
        print("one CPU only: node and inbox servers share it (figures are pessimistic)")
    sign_per_s = rsa_sign_rate()
    context = multiprocessing.get_context("spawn")
    pipe, child_pipe = context.Pipe()
    process = context.Process(
        target=hosts_main, args=(child_pipe, load_cpu, args.hosts), daemon=True
    )
    process.start()
    settings = {}
    if args.concurrency:
        settings["federation__delivery_concurrency"] = args.concurrency
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kith-bench-fanout-") as tmp:
        node = await start_node(Path(tmp), **settings)
        try:
            ports = await receive(pipe, "ports")
            author, public_pem = await create_author(node)
            followers = await add_followers(node, author, ports, args.followers_per_host)
            concurrency = node.config.federation.delivery_concurrency
            print(
                f"node CPU {server_cpu}, inbox servers CPU {load_cpu}; {followers} followers on "
                f"{len(ports)} hosts; delivery concurrency {concurrency}, "
                f"{node.config.federation.delivery_per_host} per host\n"
            )
            print("'queued': publish_status + deliveries committed; 'all hosts': until the last")
            print("host received its Create; 'recorded': until the node marked every delivery.\n")
            print(HEADER)
            print("-" * len(HEADER))
            for run in range(args.runs):
                rows.append(await one_post(node, pipe, author, public_pem, ports, run))
                print_row(run, rows[-1])
        finally:
            pipe.send(("stop",))
            await node.stop()
    process.join(10)
    summarise(rows, sign_per_s, args)


def summarise(rows: list[dict[str, Any]], sign_per_s: float, args: argparse.Namespace) -> None:
    warm = rows[1:] or rows
    fanout_s = statistics.median(row["fanout_s"] for row in warm)
    recorded_s = statistics.median(row["recorded_s"] for row in warm)
    per_s = args.hosts / fanout_s
    cpu_ms = statistics.median(row["cpu_ms"] for row in warm)
    problems = sum(len(row["problems"]) for row in rows)
    print(
        f"\nmedian of {len(warm)} warm posts to {args.hosts * args.followers_per_host} followers:\n"
    )
    print(f"{'figure':<46} {'value':>10}  target")
    print("-" * 72)
    print(f"{'RSA-2048 sign bound, node CPU (per s)':<46} {sign_per_s:>10,.0f}  bound")
    print(
        f"{'publish to every host received (s)':<46} {fanout_s:>10.3f}  "
        f"< {TARGET_SECONDS:.0f}: {verdict(fanout_s, TARGET_SECONDS, higher_is_better=False)}"
    )
    print(
        f"{'  cold first post (s)':<46} {rows[0]['fanout_s']:>10.3f}  "
        f"< {TARGET_SECONDS:.0f}: {verdict(rows[0]['fanout_s'], TARGET_SECONDS, False)}"
    )
    print(f"{'publish to every delivery recorded (s)':<46} {recorded_s:>10.3f}")
    print(f"{'deliveries (one per host) per s':<46} {per_s:>10,.0f}")
    print(f"{'  as a share of the sign bound':<46} {per_s / sign_per_s:>10.1%}  ≥ 50% (G4)")
    print(f"{'node CPU per delivery (ms)':<46} {cpu_ms / args.hosts:>10.2f}")
    print(f"{'problems (wrong count, bad signature)':<46} {problems:>10}  0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100, help="follower servers (ports)")
    parser.add_argument("--followers-per-host", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5, help="posts; the first is cold")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="federation.delivery_concurrency (0: default)"
    )
    args = parser.parse_args()
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
