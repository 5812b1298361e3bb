"""GET /api/v1/timelines/home with full Mastodon entities, over a million statuses.

Run: python bench/timeline.py [--statuses 1000000] [--accounts 20000] [--local 1000]
                              [--follows 200] [--seconds 8] [--runs 3]

The data set is built once straight into a SQLite database at the schema's head (bulk inserts,
not the social functions: a million posts through the API would take an hour) and cached under
the system's temp directory, keyed by its parameters; later runs copy it. Its shape: `--local`
local users and the rest remote accounts; statuses spread evenly over all accounts, one in ten
a reply, one in twenty a boost, one in ten with a hashtag, one in twenty mentioning someone,
and 200,000 favourites; each local user follows `--follows` accounts, and its home feed holds
the newest 800 statuses of the accounts it follows and its own (Mastodon keeps 800 per feed).

The node runs in this process, pinned to one CPU, on a copy of that database; a load generator
in another process (pinned to the other CPU) signs in as the local users (one token each) and
sends GET /api/v1/timelines/home (20 statuses) over keep-alive connections, rotating users,
with 1 and then 16 concurrent clients, for `--seconds` per run after a warm-up. In the same run
the bare-SQL bound is measured: the page's two queries (feed index range and status rows) with
the stdlib sqlite3 module in this process, no entities. Medians over the runs are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import multiprocessing
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from common import percentile, pin, split_cpus, start_node, verdict

from server.config import load_config
from server.identity.tokens import create_token, parse_scopes
from server.node import open_database

FEED_SIZE = 800
PAGE = 20
FAVOURITES = 200_000
TARGET_P99_MS = {1: 10.0, 16: 50.0}
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _time(moment: datetime) -> str:
    """SQLAlchemy's SQLite DateTime text."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _status_id(index: int, total: int) -> tuple[int, datetime]:
    moment = _EPOCH + timedelta(seconds=index * (300 * 86400 / total))
    return (int(moment.timestamp() * 1000) << 16) | (index & 0xFFFF), moment


async def _create_schema(path: Path) -> None:
    config = load_config(None, environ={}, overrides={"storage.data_dir": str(path)}, cwd=path)
    db = await open_database(config, initialize_empty=True)
    await db.dispose()


def build(path: Path, args: argparse.Namespace) -> None:
    """The data set, in bulk, into a fresh database at the schema's head."""
    started = time.perf_counter()
    asyncio.run(_create_schema(path))
    connection = sqlite3.connect(path / "kith.db")
    connection.execute("PRAGMA synchronous=OFF")
    rng = random.Random(7)
    now = _time(_EPOCH)
    accounts = []
    for n in range(args.accounts):
        local = n < args.local
        name = f"user{n}"
        accounts.append(
            (
                n + 1,
                name,
                name,
                "" if local else f"remote{n % 500}.example",
                None if local else f"https://remote{n % 500}.example/users/{name}",
                None if local else f"https://remote{n % 500}.example/@{name}",
                None if local else f"https://remote{n % 500}.example/users/{name}/followers",
                "Person",
                False,
                f"User {n}",
                "A bio with <b>some</b> words." if not local else "A local bio",
                False,
                True,
                False,
                False,
                now,
            )
        )
    connection.executemany(
        "INSERT INTO accounts (id, username, username_key, domain, uri, url, followers_url,"
        " actor_type, is_instance_actor, display_name, note, is_locked, is_discoverable,"
        " is_indexable, is_admin, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        accounts,
    )
    print(f"  accounts: {len(accounts):,}", flush=True)
    by_author: list[list[int]] = [[] for _ in range(args.accounts)]
    batch: list[tuple[Any, ...]] = []
    tags: list[tuple[int, str]] = []
    mentions: list[tuple[int, int, bool]] = []
    last_ids: list[int] = []
    for index in range(args.statuses):
        status_id, moment = _status_id(index, args.statuses)
        author = rng.randrange(args.accounts)
        kind = rng.random()
        reply_to = rng.choice(last_ids) if kind < 0.1 and last_ids else None
        boost_of = rng.choice(last_ids) if 0.1 <= kind < 0.15 and last_ids else None
        content = "" if boost_of else f"<p>Status number {index} with some text in it.</p>"
        host = "" if author < args.local else f"https://remote{author % 500}.example"
        uri = f"{host or 'http://bench.local'}/objects/{status_id}"
        batch.append(
            (
                status_id,
                uri,
                uri,
                author + 1,
                reply_to,
                None,
                boost_of,
                content,
                "" if host else f"Status number {index}",
                "",
                False,
                "public",
                "en",
                None,
                _time(moment),
                None,
            )
        )
        if not boost_of:
            last_ids.append(status_id)
            if len(last_ids) > 1000:
                last_ids = last_ids[-500:]
            if rng.random() < 0.1:
                tags.append((status_id, f"tag{rng.randrange(100)}"))
            if rng.random() < 0.05:
                mentions.append((status_id, rng.randrange(args.accounts) + 1, False))
        by_author[author].append(status_id)
        if len(batch) == 50_000:
            _insert_statuses(connection, batch)
            batch.clear()
            print(f"  statuses: {index + 1:,}", flush=True)
    _insert_statuses(connection, batch)
    connection.executemany("INSERT INTO status_tags (status_id, name) VALUES (?,?)", tags)
    connection.executemany(
        "INSERT OR IGNORE INTO mentions (status_id, account_id, silent) VALUES (?,?,?)", mentions
    )
    favourites = {
        (
            rng.randrange(args.accounts) + 1,
            rng.choice(by_author[rng.randrange(args.accounts)] or [0]),
        )
        for _ in range(FAVOURITES)
    }
    connection.executemany(
        "INSERT INTO favourites (id, account_id, status_id, uri, created_at) VALUES (?,?,?,?,?)",
        [
            (n + 1, account, status, None, now)
            for n, (account, status) in enumerate(sorted(favourites))
            if status
        ],
    )
    follow_rows = []
    feeds = []
    for user in range(args.local):
        followed = rng.sample(range(args.accounts), args.follows)
        follow_rows += [
            (user * args.follows + k + 1, user + 1, target + 1, "accepted", True, False, now)
            for k, target in enumerate(followed)
        ]
        sources = [by_author[a] for a in [*followed, user]]
        newest = heapq.nlargest(FEED_SIZE, heapq.merge(*sources))
        feeds += [(user + 1, status_id) for status_id in newest]
    connection.executemany(
        "INSERT OR IGNORE INTO follows (id, account_id, target_account_id, state, show_reblogs,"
        " notify, created_at) VALUES (?,?,?,?,?,?,?)",
        follow_rows,
    )
    connection.executemany(
        "INSERT OR IGNORE INTO home_feed (account_id, status_id) VALUES (?,?)", feeds
    )
    connection.commit()
    connection.execute("ANALYZE")
    connection.close()
    print(
        f"  built: {args.statuses:,} statuses, {len(follow_rows):,} follows, "
        f"{len(feeds):,} feed entries in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def _insert_statuses(connection: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    connection.executemany(
        "INSERT INTO statuses (id, uri, url, account_id, in_reply_to_id, in_reply_to_uri,"
        " reblog_of_id, content, text, spoiler_text, sensitive, visibility, language,"
        " context_uri, created_at, edited_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )


def bare_sql_per_second(path: Path, users: int, seconds: float = 1.0) -> float:
    """Pages per second with the feed query alone (no entities, no HTTP)."""
    connection = sqlite3.connect(path)
    query = (
        "SELECT statuses.* FROM statuses JOIN home_feed ON home_feed.status_id = statuses.id"
        " WHERE home_feed.account_id = ? ORDER BY home_feed.status_id DESC LIMIT ?"
    )
    done, user = 0, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        user = user % users + 1
        rows = connection.execute(query, (user, PAGE)).fetchall()
        assert len(rows) == PAGE
        done += 1
    connection.close()
    return done / seconds


def load_generator(pipe: Connection, cpu: int | None) -> None:
    pin(cpu)
    asyncio.run(_generate(pipe))


async def _generate(pipe: Connection) -> None:
    while True:
        command = pipe.recv()
        if command is None:
            return
        url, tokens, clients, seconds = command
        pipe.send(await _load(url, tokens, clients, seconds))


async def _load(url: str, tokens: list[str], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(offset: int, until: float, record: bool) -> None:
            nonlocal failures
            n = offset
            while time.perf_counter() < until:
                token = tokens[n % len(tokens)]
                n += clients
                started = time.perf_counter()
                async with session.get(
                    url, headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    body = await response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200 or body[:1] != b"[":
                    failures += 1
                elif record:
                    latencies.append(elapsed)

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(client(i, warm, False) for i in range(clients)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(client(i, until, True) for i in range(clients)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "wall": wall, "failures": failures}


async def measure(args: argparse.Namespace) -> None:
    key = f"kith-timeline-{args.statuses}-{args.accounts}-{args.local}-{args.follows}"
    cached = Path(tempfile.gettempdir()) / key
    if not (cached / "kith.db").exists():
        print(f"building the data set in {cached} (once) …", flush=True)
        shutil.rmtree(cached, ignore_errors=True)
        cached.mkdir(parents=True)
        await asyncio.to_thread(build, cached, args)
    node_cpu, helper_cpu = split_cpus()
    pin(node_cpu)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        for name in ("kith.db", "kith.db-wal", "kith.db-shm"):
            if (cached / name).exists():
                shutil.copy(cached / name, data_dir / name)
        node = await start_node(
            data_dir, api__requests_per_window=10**9, api__anonymous_requests_per_window=10**9
        )
        try:
            tokens = []
            async with node.db.transaction() as conn:
                for user in range(1, args.local + 1):
                    tokens.append(
                        await create_token(
                            conn, user, parse_scopes("read"), "bench", datetime.now(UTC)
                        )
                    )
            url = f"{node.base_url}/api/v1/timelines/home"
            parent, child = multiprocessing.Pipe()
            helper = multiprocessing.Process(target=load_generator, args=(child, helper_cpu))
            helper.start()
            rows: dict[int, list[dict[str, float]]] = {1: [], 16: []}
            bounds = []
            for run in range(args.runs):
                bounds.append(bare_sql_per_second(data_dir / "kith.db", args.local))
                for clients in (1, 16):
                    parent.send((url, tokens, clients, args.seconds))
                    result = await asyncio.to_thread(parent.recv)
                    latencies = result["latencies"]
                    row = {
                        "per_s": len(latencies) / result["wall"],
                        "p50": percentile(latencies, 0.5) * 1000,
                        "p99": percentile(latencies, 0.99) * 1000,
                        "failures": result["failures"],
                    }
                    rows[clients].append(row)
                    print(
                        f"run {run + 1}  {clients:>2} clients  {row['per_s']:7.0f} req/s"
                        f"  p50 {row['p50']:6.2f} ms  p99 {row['p99']:6.2f} ms"
                        f"  failures {row['failures']}  (bare SQL {bounds[-1]:,.0f} pages/s)",
                        flush=True,
                    )
            parent.send(None)
            helper.join()
        finally:
            await node.stop()
    summarise(rows, statistics.median(bounds), args)


def summarise(
    rows: dict[int, list[dict[str, float]]], bound: float, args: argparse.Namespace
) -> None:
    print(
        f"\nmedian of {args.runs} runs, {args.statuses:,} statuses, {args.accounts:,} accounts,"
        f" {args.local:,} local users following {args.follows} each:\n"
    )
    print(f"{'figure':<52}{'value':>10}  target")
    print("-" * 76)
    print(f"{'bare-SQL bound, feed page (pages/s, one core)':<52}{bound:>10,.0f}  bound")
    for clients in (1, 16):
        median = {k: statistics.median(r[k] for r in rows[clients]) for k in rows[clients][0]}
        target = TARGET_P99_MS[clients]
        print(f"{f'{clients} client(s): requests/s':<52}{median['per_s']:>10,.0f}")
        print(f"{'  as a share of the bare-SQL bound':<52}{median['per_s'] / bound:>10.1%}")
        print(f"{'  p50 (ms)':<52}{median['p50']:>10.2f}")
        print(
            f"{'  p99 (ms)':<52}{median['p99']:>10.2f}  "
            f"≤ {target:g}: {verdict(median['p99'], target, higher_is_better=False)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statuses", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--local", type=int, default=1_000)
    parser.add_argument("--follows", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
