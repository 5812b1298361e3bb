"""Signed Create(Note) activities a real node's shared inbox accepts per second (202s).

Run: python bench/inbox.py [--activities 1500] [--actors 200] [--concurrency 64] [--runs 3]

The node runs in this process (pinned to one CPU) with SQLite in a temporary directory and
the real clock. Another process (pinned to the other CPU) serves the remote actors' documents
as a fake peer and is the load generator: it signs every request before the timed phase (RSA
signing costs ~15 verifications) and then POSTs them over keep-alive connections. A warm-up
lets the node fetch and cache every actor's key first. Each run prints what the clients saw
(202s per second of wall time, p50/p99 latency of the 202s), the node's CPU per accepted
activity, how many items the inbox worker had applied when the last 202 came back and how long
it then took to apply the rest. The RSA-2048 verify bound is measured on the node's CPU in
the same run; the ratio to it is the figure that survives a noisy or slower machine.
"""

from __future__ import annotations

import argparse
import asyncio
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

import aiohttp
from aiohttp import web
from common import (
    BenchNode,
    free_listener,
    percentile,
    pin,
    rsa_verify_rate,
    split_cpus,
    start_node,
    verdict,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from federation.tables import inbox_items, remote_keys
from protocol.httpsig import HttpRequest, sign_cavage

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
AS2_JSON = "application/activity+json"
DISTINCT_KEYS = 16  # actors share key material (generating 200 keys takes seconds); key ids differ
TARGET_PER_SECOND = 1000.0
TARGET_P99_MS = 50.0
OPEN_LOOP_CONNECTIONS_MAX = 512
MASTODON_CONTEXT = [
    "https://www.w3.org/ns/activitystreams",
    {
        "ostatus": "http://ostatus.org#",
        "atomUri": "ostatus:atomUri",
        "inReplyToAtomUri": "ostatus:inReplyToAtomUri",
        "conversation": "ostatus:conversation",
        "sensitive": "as:sensitive",
        "toot": "http://joinmastodon.org/ns#",
        "votersCount": "toot:votersCount",
        "Hashtag": "as:Hashtag",
    },
]
FILLER = (
    "Federation benchmarks need a body of realistic size, so this post rambles on about "
    "loopback servers, shared inboxes and signatures until it is about as long as a typical "
    "Mastodon toot with a mention and a hashtag. "
)


# --- the other process: a fake peer serving actors, and the load generator ---------------------


def actor_document(base: str, name: str, public_pem: str) -> dict[str, Any]:
    """A Mastodon-shaped Person with its RSA key."""
    actor = f"{base}/users/{name}"
    return {
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": actor,
        "type": "Person",
        "preferredUsername": name,
        "name": name.title(),
        "summary": "<p>A benchmark actor.</p>",
        "url": f"{base}/@{name}",
        "inbox": f"{actor}/inbox",
        "outbox": f"{actor}/outbox",
        "followers": f"{actor}/followers",
        "following": f"{actor}/following",
        "endpoints": {"sharedInbox": f"{base}/inbox"},
        "manuallyApprovesFollowers": False,
        "discoverable": True,
        "published": "2025-01-01T00:00:00Z",
        "publicKey": {"id": f"{actor}#main-key", "owner": actor, "publicKeyPem": public_pem},
    }


def create_note(base: str, name: str, mention: str, serial: str, now: datetime) -> bytes:
    """A public Mastodon 4 Create(Note) with a mention, a hashtag and replies, about 2.2 KB."""
    actor = f"{base}/users/{name}"
    note_id = f"{actor}/statuses/{serial}"
    published = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    host = base.split("://", 1)[1]
    content = (
        f'<p><span class="h-card"><a href="{base}/users/{mention}" class="u-url mention">'
        f"@<span>{mention}</span></a></span> {FILLER}"
        f'<a href="{base}/tags/kith" class="mention hashtag" rel="tag">#<span>kith</span></a></p>'
    )
    to, cc = [PUBLIC], [f"{actor}/followers", f"{base}/users/{mention}"]
    activity = {
        "@context": MASTODON_CONTEXT,
        "id": f"{note_id}/activity",
        "type": "Create",
        "actor": actor,
        "published": published,
        "to": to,
        "cc": cc,
        "object": {
            "id": note_id,
            "type": "Note",
            "summary": None,
            "inReplyTo": None,
            "published": published,
            "url": f"{base}/@{name}/{serial}",
            "attributedTo": actor,
            "to": to,
            "cc": cc,
            "sensitive": False,
            "atomUri": note_id,
            "inReplyToAtomUri": None,
            "conversation": f"tag:{host},2026-01-01:objectId={serial}:objectType=Conversation",
            "content": content,
            "contentMap": {"en": content},
            "attachment": [],
            "tag": [
                {"type": "Mention", "href": f"{base}/users/{mention}", "name": f"@{mention}"},
                {"type": "Hashtag", "href": f"{base}/tags/kith", "name": "#kith"},
            ],
            "replies": {
                "id": f"{note_id}/replies",
                "type": "Collection",
                "first": {
                    "type": "CollectionPage",
                    "next": f"{note_id}/replies?only_other_accounts=true&page=true",
                    "partOf": f"{note_id}/replies",
                    "items": [],
                },
            },
        },
    }
    return json.dumps(activity, separators=(",", ":")).encode()


TIMEOUT = aiohttp.ClientTimeout(total=60)


class Tally:
    """What the load generator's clients saw: answers by status, latencies of the 202s."""

    def __init__(self, inbox_url: str) -> None:
        self.inbox_url = inbox_url
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []

    async def post(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str], since: float
    ) -> None:
        """POST one activity; its latency counts from `since` (sent, or due)."""
        try:
            async with session.post(self.inbox_url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.statuses[status] += 1
        if status == 202:
            self.latencies.append(time.perf_counter() - since)

    def seen(self, wall: float, cpu: float) -> dict[str, Any]:
        return {
            "statuses": dict(self.statuses),
            "latencies": self.latencies,
            "wall": wall,
            "cpu": cpu,
        }


class LoadGenerator:
    """Serves the actors and sends pre-signed activities when the node process says so."""

    def __init__(self, pipe: Connection, actors: int) -> None:
        self.pipe = pipe
        self.names = [f"actor{i}" for i in range(actors)]
        self.keys = [
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            for _ in range(min(actors, DISTINCT_KEYS))
        ]
        self.pems = [
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
            for key in self.keys
        ]
        self.base = ""
        self.inbox_url = ""
        self.actor_gets = 0

    async def actor(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.names:
            return web.Response(status=404)
        self.actor_gets += 1
        pem = self.pems[self.names.index(name) % len(self.pems)]
        document = actor_document(self.base, name, pem)
        return web.json_response(document, content_type=AS2_JSON)

    def presign(self, count: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
        """`count` signed requests, round-robin over the actors, each with its own id."""
        now = datetime.now(UTC)
        signed = []
        for serial in range(count):
            index = serial % len(self.names)
            name = self.names[index]
            mention = self.names[(index + 1) % len(self.names)]
            body = create_note(self.base, name, mention, f"{tag}-{serial}", now)
            headers = {"Content-Type": AS2_JSON}
            request = HttpRequest("POST", self.inbox_url, headers, body)
            key_id = f"{self.base}/users/{name}#main-key"
            headers.update(sign_cavage(request, key_id, self.keys[index % len(self.keys)], now))
            signed.append((body, headers))
        return signed

    async def send(
        self, requests: list[tuple[bytes, dict[str, str]]], concurrency: int
    ) -> dict[str, Any]:
        """POST every request with `concurrency` keep-alive connections; what the clients saw."""
        tally = Tally(self.inbox_url)
        pending = iter(requests)
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:

            async def client() -> None:
                for body, headers in pending:
                    await tally.post(session, body, headers, time.perf_counter())

            cpu, start = time.process_time(), time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
        return tally.seen(time.perf_counter() - start, time.process_time() - cpu)

    async def send_at_rate(
        self, requests: list[tuple[bytes, dict[str, str]]], rate: float
    ) -> dict[str, Any]:
        """POST the requests at a fixed rate (open loop): a slow answer does not slow the rate.

        Latency runs from when each request was due, not when it went out, so a node that
        falls behind is charged for the queue it caused (no coordinated omission).
        """
        tally = Tally(self.inbox_url)
        connector = aiohttp.TCPConnector(limit=OPEN_LOOP_CONNECTIONS_MAX)
        async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
            cpu, start = time.process_time(), time.perf_counter()
            tasks = []
            for serial, (body, headers) in enumerate(requests):
                due = start + serial / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(tally.post(session, body, headers, due)))
            await asyncio.gather(*tasks)
        return tally.seen(time.perf_counter() - start, time.process_time() - cpu)

    async def run(self) -> None:
        listener = free_listener()
        self.base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        app = web.Application()
        app.router.add_get("/users/{name}", self.actor)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        self.pipe.send(("peer", self.base))
        prepared: list[tuple[bytes, dict[str, str]]] = []
        concurrency = 1
        try:
            while True:
                message = await asyncio.to_thread(self.pipe.recv)
                if message[0] == "target":
                    self.inbox_url = message[1]
                elif message[0] == "warm":
                    seen = self.send(self.presign(len(self.names), "warm"), message[1])
                    result = await seen
                    result["actor_gets"] = self.actor_gets
                    self.pipe.send(("warmed", result))
                elif message[0] == "prepare":
                    _, count, concurrency, tag = message
                    start = time.perf_counter()
                    prepared = self.presign(count, tag)
                    self.pipe.send(("ready", time.perf_counter() - start))
                elif message[0] == "go":
                    result = await self.send(prepared, concurrency)
                    result["actor_gets"] = self.actor_gets
                    self.pipe.send(("done", result))
                elif message[0] == "go_at_rate":
                    result = await self.send_at_rate(prepared, message[1])
                    result["actor_gets"] = self.actor_gets
                    self.pipe.send(("done", result))
                elif message[0] == "stop":
                    break
        finally:
            await runner.cleanup()


def load_generator_main(pipe: Connection, cpu: int | None, actors: int) -> None:
    """Entry point of the load-generator process."""
    pin(cpu)
    asyncio.run(LoadGenerator(pipe, actors).run())


# --- this process: the node ----------------------------------------------------------------


async def receive(pipe: Connection, expected: str) -> Any:
    message = await asyncio.to_thread(pipe.recv)
    if message[0] != expected:
        raise RuntimeError(f"expected {expected!r} from the load generator, got {message!r}")
    return message[1]


async def inbox_counts(node: BenchNode) -> Counter[str]:
    """Inbox items by state."""
    async with node.db.read() as conn:
        rows = await conn.execute(
            select(inbox_items.c.state, func.count()).group_by(inbox_items.c.state)
        )
        return Counter({row[0]: row[1] for row in rows})


async def drain(node: BenchNode, timeout_s: float = 120.0) -> float:
    """Wait until the inbox worker has applied every stored item; seconds it took."""
    start = time.perf_counter()
    queued = select(inbox_items.c.id).where(inbox_items.c.state == "queued").limit(1)
    while True:
        async with node.db.read() as conn:  # an index probe: cheap next to the worker's work
            if (await conn.execute(queued)).first() is None:
                return time.perf_counter() - start
        if time.perf_counter() - start > timeout_s:
            raise RuntimeError(f"the inbox worker did not drain within {timeout_s:.0f} s")
        await asyncio.sleep(0.02)


async def measure(args: argparse.Namespace) -> None:
    server_cpu, load_cpu = split_cpus()
    pin(server_cpu)
    if server_cpu is None:
        print("one CPU only: node and load generator share it (figures are pessimistic)")
    verify_per_s = rsa_verify_rate()
    context = multiprocessing.get_context("spawn")
    pipe, child_pipe = context.Pipe()
    process = context.Process(
        target=load_generator_main, args=(child_pipe, load_cpu, args.actors), daemon=True
    )
    process.start()
    rows: list[dict[str, Any]] = []
    paced: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kith-bench-inbox-") as tmp:
        node = await start_node(Path(tmp))
        try:
            await receive(pipe, "peer")
            pipe.send(("target", node.base_url + "/inbox"))
            pipe.send(("warm", args.concurrency))
            warm = await receive(pipe, "warmed")
            await drain(node)
            async with node.db.read() as conn:
                cached = (
                    await conn.execute(select(func.count()).select_from(remote_keys))
                ).scalar()
            print(
                f"node CPU {server_cpu}, load generator CPU {load_cpu}; warm-up: "
                f"{warm['statuses']} from {args.actors} actors, {warm['actor_gets']} actor "
                f"fetches, {cached} keys stored"
            )
            for run in range(args.runs):
                rows.append(await one_run(node, pipe, args, f"run{run}"))
                print_row(run + 1, rows[-1])
            print(
                f"\nopen loop: {args.rate:,.0f} activities/s offered for {args.rate_seconds:.0f} s"
                " (the worker applying meanwhile); latency counted from when each was due"
            )
            for run in range(args.runs):
                paced.append(await one_run(node, pipe, args, f"paced{run}", args.rate))
                print_row(run + 1, paced[-1], header=False)
        finally:
            pipe.send(("stop",))
            await node.stop()
    process.join(10)
    summarise(rows, paced, verify_per_s, args)


async def one_run(
    node: BenchNode, pipe: Connection, args: argparse.Namespace, tag: str, rate: float = 0.0
) -> dict[str, Any]:
    """One timed run: closed loop (`concurrency` connections as fast as they go) or, with a
    rate, open loop (`rate` requests per second whatever the answers)."""
    count = round(rate * args.rate_seconds) if rate else args.activities
    pipe.send(("prepare", count, args.concurrency, tag))
    await receive(pipe, "ready")
    before = await inbox_counts(node)
    cpu = time.process_time()
    pipe.send(("go_at_rate", rate) if rate else ("go",))
    seen = await receive(pipe, "done")
    cpu_timed = time.process_time() - cpu
    at_end = await inbox_counts(node)
    drain_s = await drain(node)
    cpu_all = time.process_time() - cpu
    after = await inbox_counts(node)
    accepted = seen["statuses"].get(202, 0)
    latencies = seen["latencies"] or [float("nan")]
    return {
        "accepted": accepted,
        "refused": {k: v for k, v in seen["statuses"].items() if k != 202},
        "wall": seen["wall"],
        "per_s": accepted / seen["wall"],
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "processed_at_end": sum(at_end.values()) - at_end["queued"] - sum(before.values()),
        "drain_s": drain_s,
        "cpu_us": cpu_timed / max(accepted, 1) * 1e6,
        "cpu_all_us": cpu_all / max(accepted, 1) * 1e6,
        "client_cpu_us": seen["cpu"] / max(accepted, 1) * 1e6,
        "states": {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)},
        "actor_gets": seen["actor_gets"],
    }


HEADER = (
    f"{'run':>3} {'202s':>6} {'wall s':>7} {'202/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'applied':>8} {'drain s':>8} {'node µs':>8} {'+apply':>7} {'client':>7}  other"
)


def print_row(run: int, row: dict[str, Any], header: bool = True) -> None:
    if run == 1 and header:
        print("\n'applied': items the inbox worker had applied when the last 202 came back;")
        print("'node µs' is node CPU per 202 while sending, '+apply' until the worker drained,")
        print("'client' the load generator's CPU per 202.\n")
        print(HEADER)
        print("-" * len(HEADER))
    other = ", ".join(f"{k}: {v}" for k, v in sorted(row["refused"].items())) or "-"
    states = ", ".join(f"{k} {v}" for k, v in sorted(row["states"].items()))
    print(
        f"{run:>3} {row['accepted']:>6} {row['wall']:>7.2f} {row['per_s']:>7,.0f} "
        f"{row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} {row['processed_at_end']:>8} "
        f"{row['drain_s']:>8.2f} {row['cpu_us']:>8.0f} {row['cpu_all_us']:>7.0f} "
        f"{row['client_cpu_us']:>7.0f}  {other}; items {states}"
    )


def summarise(
    rows: list[dict[str, Any]],
    paced: list[dict[str, Any]],
    verify_per_s: float,
    args: argparse.Namespace,
) -> None:
    per_s = statistics.median(row["per_s"] for row in rows)
    p50 = statistics.median(row["p50_ms"] for row in rows)
    p99 = statistics.median(row["p99_ms"] for row in rows)
    drain_s = statistics.median(row["drain_s"] for row in rows)
    cpu_all = statistics.median(row["cpu_all_us"] for row in rows)
    print(
        f"\nmedian of {len(rows)} runs of {args.activities} activities from {args.actors} actors, "
        f"{args.concurrency} connections:\n"
    )
    print(f"{'figure':<44} {'value':>12}  target")
    print("-" * 72)
    print(f"{'RSA-2048 verify bound, node CPU (per s)':<44} {verify_per_s:>12,.0f}  bound")
    print(
        f"{'accepted signed activities (202s per s)':<44} {per_s:>12,.0f}  "
        f"≥ {TARGET_PER_SECOND:,.0f}: {verdict(per_s, TARGET_PER_SECOND)}"
    )
    print(f"{'  as a share of the verify bound':<44} {per_s / verify_per_s:>12.1%}  ≥ 2% (G1)")
    # Saturated, a closed loop's latency is its queue: connections / throughput.
    print(f"{'  202 latency p99 (ms), saturated':<44} {p99:>12.1f}  (queueing)")
    print(f"{'  202 latency p50 (ms), saturated':<44} {p50:>12.1f}")
    paced_per_s = statistics.median(row["per_s"] for row in paced)
    paced_p99 = statistics.median(row["p99_ms"] for row in paced)
    paced_p50 = statistics.median(row["p50_ms"] for row in paced)
    applied = statistics.median(row["processed_at_end"] for row in paced)
    print(f"{f'at {args.rate:,.0f}/s offered (open loop): 202s per s':<44} {paced_per_s:>12,.0f}")
    print(
        f"{'  202 latency p99 (ms)':<44} {paced_p99:>12.1f}  "
        f"< {TARGET_P99_MS:.0f}: {verdict(paced_p99, TARGET_P99_MS, higher_is_better=False)}"
    )
    print(f"{'  202 latency p50 (ms)':<44} {paced_p50:>12.1f}")
    print(f"{'  applied by the worker meanwhile':<44} {applied:>12,.0f}")
    print(f"{'worker drain after the last 202 (s)':<44} {drain_s:>12.2f}")
    print(f"{'node CPU per activity incl. applying (µs)':<44} {cpu_all:>12.0f}")
    print(
        f"{'  = activities/s on one core, end to end':<44} {1e6 / cpu_all:>12,.0f}  "
        f"(vs verify bound {1e6 / cpu_all / verify_per_s:.1%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=1500, help="per timed run")
    parser.add_argument("--actors", type=int, default=200, help="remote actors signing them")
    parser.add_argument("--concurrency", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (medians are printed)")
    parser.add_argument("--rate", type=float, default=TARGET_PER_SECOND, help="open-loop rate")
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="per open-loop run")
    args = parser.parse_args()
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
