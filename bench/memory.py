"""How much memory one node holds: idle, under inbox load, and over a soak (issue 7, G10).

Run: python bench/memory.py [--requests 1000] [--rate 500] [--seconds 20] [--soak-minutes 30]
     python bench/memory.py --quick   # start + 1,000 mixed requests only (CI prints this)

The node is this process, built as `kith serve` builds one (bench/common.py), with SQLite in a
temporary directory; its resident set size is read from /proc/self/status (VmRSS). Everything
that makes requests runs in other processes, so their memory is not counted:

1. after start: one local user with a token;
2. idle after 1,000 mixed client requests (posting, home and public timelines, the user's own
   account, WebFinger, the actor document, nodeinfo) sent by a helper process, then a second of
   quiet: target ≤ 120 MiB;
3. under sustained inbox load: bench/inbox.py's load generator (remote actors served from
   another process, pre-signed Create(Note)s) posts at `--rate` for `--seconds`; the peak RSS
   sampled every 100 ms while it runs and the worker drains: target ≤ 256 MiB;
4. a soak (`--soak-minutes`, 0 to skip): rounds of mixed requests and inbox load; growth of
   the RSS at the end of the soak over the RSS after its first round: target ≤ 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
from common import BenchNode, pin, split_cpus, start_node, verdict
from inbox import drain, load_generator_main, receive

from server.identity.accounts import create_account
from server.identity.keys import generate_actor_keys
from server.identity.tokens import create_token, parse_scopes

MIB = 1024 * 1024
IDLE_TARGET_MIB = 120
LOAD_TARGET_MIB = 256
GROWTH_TARGET = 0.10


def rss_bytes() -> int:
    """This process's resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# --- the client process: mixed requests -------------------------------------------------------


async def mixed_requests(base: str, token: str, count: int) -> dict[int, int]:
    """`count` requests a Mastodon app and a peer would make, round robin; statuses seen."""
    auth = {"Authorization": f"Bearer {token}"}
    host = base.split("://", 1)[1]
    calls = [
        ("POST", "/api/v1/statuses", auth, {"status": "memory bench post", "visibility": "public"}),
        ("GET", "/api/v1/timelines/home?limit=20", auth, None),
        ("GET", "/api/v1/timelines/public?limit=20", auth, None),
        ("GET", "/api/v1/accounts/verify_credentials", auth, None),
        ("GET", f"/.well-known/webfinger?resource=acct:bench@{host}", {}, None),
        ("GET", "/users/bench", {"Accept": "application/activity+json"}, None),
        ("GET", "/nodeinfo/2.0", {}, None),
    ]
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(base_url=base) as http:

        async def one(n: int) -> None:
            method, path, headers, body = calls[n % len(calls)]
            async with http.request(method, path, headers=headers, json=body) as answer:
                await answer.read()
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

        for start in range(0, count, 8):  # eight at a time, as a few busy apps would
            await asyncio.gather(*(one(n) for n in range(start, min(count, start + 8))))
    return statuses


def client_main(pipe: Connection, cpu: int | None) -> None:
    pin(cpu)
    while True:
        command = pipe.recv()
        if command[0] == "stop":
            return
        _, base, token, count = command
        pipe.send(asyncio.run(mixed_requests(base, token, count)))


# --- this process: the node -------------------------------------------------------------------


async def make_user(node: BenchNode) -> str:
    keys = await asyncio.to_thread(generate_actor_keys)
    now = datetime.now(UTC)
    async with node.db.transaction() as conn:
        account = await create_account(conn, "bench", keys, now)
        return await create_token(conn, account.id, parse_scopes("read write"), "bench", now)


async def quiet_rss(seconds: float = 1.0) -> int:
    await asyncio.sleep(seconds)
    gc.collect()
    return rss_bytes()


async def peak_while(task: asyncio.Future, node: BenchNode) -> int:
    """The highest RSS sampled every 100 ms until `task` is done and the inbox has drained."""
    peak = rss_bytes()
    while not task.done():
        await asyncio.sleep(0.1)
        peak = max(peak, rss_bytes())
    await task
    drained = asyncio.ensure_future(drain(node, timeout_s=600))
    while not drained.done():
        await asyncio.sleep(0.1)
        peak = max(peak, rss_bytes())
    await drained
    return peak


async def inbox_load(pipe: Connection, rate: float, seconds: float, tag: str) -> None:
    pipe.send(("prepare", round(rate * seconds), 64, tag))
    await receive(pipe, "ready")
    pipe.send(("go_at_rate", rate))
    await receive(pipe, "done")


async def measure(args: argparse.Namespace) -> None:
    server_cpu, load_cpu = split_cpus()
    pin(server_cpu)
    context = multiprocessing.get_context("spawn")
    client, client_end = context.Pipe()
    client_process = context.Process(target=client_main, args=(client_end, load_cpu), daemon=True)
    client_process.start()
    peer: Connection | None = None
    peer_process = None
    if not args.quick:
        peer, peer_end = context.Pipe()
        peer_process = context.Process(
            target=load_generator_main, args=(peer_end, load_cpu, args.actors), daemon=True
        )
        peer_process.start()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="kith-bench-memory-") as tmp:
        # The limiter would answer most of one token's requests 429: measure the work instead.
        node = await start_node(
            Path(tmp), api__requests_per_window=10**6, api__posts_per_window=10**6
        )
        try:
            token = await make_user(node)
            started = await quiet_rss()
            rows.append(("RSS after start (MiB)", started / MIB, ""))
            client.send(("run", node.base_url, token, args.requests))
            statuses = await asyncio.to_thread(client.recv)
            idle = await quiet_rss()
            rows.append(
                _row(f"idle after {args.requests:,} mixed requests (MiB)", idle, IDLE_TARGET_MIB)
            )
            print(f"mixed requests answered: {dict(sorted(statuses.items()))}")
            if peer is not None:
                await receive(peer, "peer")
                peer.send(("target", node.base_url + "/inbox"))
                peer.send(("warm", 64))
                await receive(peer, "warmed")
                load = asyncio.ensure_future(inbox_load(peer, args.rate, args.seconds, "load"))
                peak = await peak_while(load, node)
                name = f"peak under inbox load, {args.rate:,.0f}/s (MiB)"
                rows.append(_row(name, peak, LOAD_TARGET_MIB))
                if args.soak_minutes:
                    await soak(args, node, client, peer, token, rows)
        finally:
            if peer is not None:
                peer.send(("stop",))
            client.send(("stop",))
            await node.stop()
    for process in (client_process, peer_process):
        if process is not None:
            process.join(10)
    print()
    print(f"{'figure':<52} {'value':>10}  target")
    for name, value, target in rows:
        print(f"{name:<52} {value:>10.1f}  {target}")


def _row(name: str, rss: int, target_mib: int) -> tuple[str, float, str]:
    return name, rss / MIB, f"≤ {target_mib}  {verdict(rss / MIB, target_mib, False)}"


async def soak(
    args: argparse.Namespace,
    node: BenchNode,
    client: Connection,
    peer: Connection,
    token: str,
    rows: list[tuple[str, float, str]],
) -> None:
    """Rounds of mixed requests and inbox load for `--soak-minutes`; RSS growth after round 1."""
    end = time.monotonic() + args.soak_minutes * 60
    first, last, rounds = 0, 0, 0
    while time.monotonic() < end:
        rounds += 1
        client.send(("run", node.base_url, token, args.requests))
        await asyncio.to_thread(client.recv)
        await inbox_load(peer, args.rate / 2, args.seconds / 2, f"soak{rounds}")
        await drain(node, timeout_s=600)
        last = await quiet_rss()
        first = first or last
        print(f"soak round {rounds}: {last / MIB:.1f} MiB")
    growth = (last - first) / first if first else 0.0
    rows.append((f"growth over a {args.soak_minutes:g}-minute soak (%)", growth * 100,
                 f"≤ {GROWTH_TARGET:.0%}  {verdict(growth, GROWTH_TARGET, False)}"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="mixed client requests")
    parser.add_argument("--actors", type=int, default=200, help="remote actors posting")
    parser.add_argument("--rate", type=float, default=500.0, help="inbox activities per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="inbox load duration")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="0: no soak (issue: 30)")
    parser.add_argument("--quick", action="store_true", help="start and mixed requests only")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
