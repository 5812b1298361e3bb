"""GET /api/v1/timelines/home with full Mastodon entities, over a million statuses.

Run: python bench/timeline.py [--statuses 1000000] [--accounts 20000] [--local 1000]
                              [--follows 200] [--seconds 8] [--runs 3] [--postgres URL]

The data set (performance.md's data set M) is built once, in bulk, straight into a database at
the schema's head (executemany on SQLite, COPY on PostgreSQL; a million posts through the
social functions would take an hour) and cached: on SQLite as a file under the temp directory,
on PostgreSQL as a database on the given server, both keyed by the parameters and the schema
revision. Its shape: `--local` local users and the rest remote accounts on 500 hosts; statuses
spread evenly over all accounts with HTML of a few hundred bytes, one in ten a reply, one in
twenty a boost, one in ten with a hashtag, one in twenty mentioning someone; 200,000
favourites; each local user follows `--follows` accounts; each local user's home feed holds the
newest 800 of the statuses that fan-out would have put there (their own and those of the
accounts they follow, minus replies to people they do not follow, as `distribute` does).

The node runs in this process, pinned to one CPU, on a copy of that database (on PostgreSQL,
on the database itself); a load generator in another process, pinned to the other CPU, holds
one token per local user and sends GET /api/v1/timelines/home (20 statuses, full entities)
over keep-alive connections, each client rotating over the users, with 1 and then 16
concurrent clients for `--seconds` each after a warm-up. Every run first sends one request per
token, so that each token's first use (a durable write, then at most one a minute) and cold
caches stay out of the timed part. In the same run, in this process, two bare-SQL bounds:
the feed page alone (the home_feed index range and the status rows, the query the issue names)
and every statement the node runs for a whole page (token, feed, boosted originals, counts,
flags, tags, mentions, accounts and their counts), both replayed through the stdlib sqlite3
module (asyncpg on PostgreSQL) with no SQLAlchemy, entities or HTTP. Medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import multiprocessing
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from common import BenchNode, percentile, pin, split_cpus, start_node, verdict
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

import server
from server.api.mastodon.entities import Presenter
from server.config import load_config
from server.identity.tokens import authenticate, create_token, parse_scopes
from server.node import open_database
from server.social.timelines import PageRequest, home_timeline

FEED_SIZE = 800  # data set M; Mastodon trims feeds at 400 (FeedManager::MAX_ITEMS)
PAGE = 20
FAVOURITES = 200_000
HOSTS = 500
BATCH = 50_000
DATASET_VERSION = 2  # bump when the shape changes: cached data sets are keyed by it
TARGET_P99_MS = {1: 10.0, 16: 50.0}
CLIENTS = (1, 16)
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_DAYS = 300
_FEED_SQL = (
    "SELECT statuses.* FROM statuses JOIN home_feed ON home_feed.status_id = statuses.id"
    " WHERE home_feed.account_id = {viewer} ORDER BY home_feed.status_id DESC LIMIT {limit}"
)
_TEXT = (
    "federation timeline boost reply mention hashtag server inbox outbox signature delivery "
    "follower garden coffee morning train river mountain library bicycle concert recipe "
    "weather photo sunset project release bug patch review meeting holiday music book film "
    "today tomorrow finally again really quite little great small quiet busy long short"
)
_WORDS = _TEXT.split()


# --- the data set ----------------------------------------------------------------------------


class DataSet:
    """Every table's rows, generated in insertion order from a fixed seed."""

    def __init__(self, args: argparse.Namespace, moment: Callable[[datetime], Any]) -> None:
        self.args = args
        self.moment = moment  # datetime → what the database driver takes
        self.rng = random.Random(7)
        self.paragraphs = [self._paragraph() for _ in range(2000)]
        self.by_author: list[list[int]] = [[] for _ in range(args.accounts)]
        self.parent_author: dict[int, int] = {}  # reply id → author index of its parent
        self.mentioned: dict[int, int] = {}  # status id → mentioned account index
        self.author_of: dict[int, int] = {}  # status id (not boosts) → author index
        self.tags: list[tuple[int, str]] = []
        self.followed: list[list[int]] = []

    def _paragraph(self) -> str:
        words = self.rng.choices(_WORDS, k=self.rng.randrange(12, 40))
        return " ".join(words).capitalize() + "."

    def accounts(self) -> list[tuple[Any, ...]]:
        created = self.moment(_EPOCH - timedelta(days=400))
        rows = []
        for n in range(self.args.accounts):
            name, local = f"user{n}", n < self.args.local
            host = "" if local else f"remote{n % HOSTS}.example"
            actor = None if local else f"https://{host}/users/{name}"
            profile = None if local else f"https://{host}/@{name}"
            followers = None if local else f"{actor}/followers"
            note = self._paragraph() if local else f"<p>{self._paragraph()}</p>"
            person = ("Person", False, f"User {n}", note, False, True, False, False, created)
            rows.append((n + 1, name, name, host, actor, profile, followers, *person))
        return rows

    def statuses(self) -> Iterator[list[tuple[Any, ...]]]:
        """Batches of status rows; remembers what the feeds, tags and mentions need."""
        batch: list[tuple[Any, ...]] = []
        recent: list[int] = []
        boosted: set[tuple[int, int]] = set()
        for index in range(self.args.statuses):
            batch.append(self._status(index, recent, boosted))
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _status(self, index: int, recent: list[int], boosted: set[tuple[int, int]]) -> tuple:
        rng, local = self.rng, self.args.local
        seconds = index * (_DAYS * 86400 / self.args.statuses)
        moment = _EPOCH + timedelta(seconds=seconds)
        status_id = (int(moment.timestamp() * 1000) << 16) | (index & 0xFFFF)
        author = rng.randrange(self.args.accounts)
        kind = rng.random()
        reply_to = boost_of = None
        if recent and kind < 0.1:
            reply_to = rng.choice(recent)
        elif recent and kind < 0.15 and (author, target := rng.choice(recent)) not in boosted:
            boost_of = target
            boosted.add((author, target))
        self.by_author[author].append(status_id)
        host = "http://bench.local" if author < local else f"https://remote{author % HOSTS}.example"
        uri = f"{host}/objects/{status_id}"
        if boost_of is not None:
            return self._row(status_id, uri, author, None, boost_of, "", "", moment)
        if reply_to is not None:
            self.parent_author[status_id] = self.author_of[reply_to]
        self.author_of[status_id] = author
        recent.append(status_id)
        if len(recent) > 2000:
            del recent[:1000]
        body = " ".join(rng.choice(self.paragraphs) for _ in range(rng.randrange(1, 4)))
        html = f"<p>{body}</p>"
        if rng.random() < 0.1:
            tag = f"tag{rng.randrange(100)}"
            self.tags.append((status_id, tag))
            html += f'<p><a href="{host}/tags/{tag}" class="mention hashtag">#{tag}</a></p>'
        if rng.random() < 0.05:
            target = rng.randrange(self.args.accounts)
            self.mentioned[status_id] = target
            html = f'<p><span class="h-card"><a href="#">@user{target}</a></span></p>' + html
        plain = body if author < local else ""
        return self._row(status_id, uri, author, reply_to, None, html, plain, moment)

    def _row(
        self,
        status_id: int,
        uri: str,
        author: int,
        reply_to: int | None,
        boost_of: int | None,
        html: str,
        plain: str,
        moment: datetime,
    ) -> tuple[Any, ...]:
        ids = (status_id, uri, uri, author + 1, reply_to, None, boost_of)
        return (*ids, html, plain, "", False, "public", "en", None, self.moment(moment), None)

    def favourites(self) -> list[tuple[Any, ...]]:
        pairs = set()
        for _ in range(FAVOURITES):
            posts = self.by_author[self.rng.randrange(self.args.accounts)]
            if posts:
                pairs.add((self.rng.randrange(self.args.accounts) + 1, self.rng.choice(posts)))
        when = self.moment(_EPOCH)
        return [(n + 1, a, s, None, when) for n, (a, s) in enumerate(sorted(pairs))]

    def follows(self) -> list[tuple[Any, ...]]:
        when, rows = self.moment(_EPOCH), []
        for user in range(self.args.local):
            others = self.rng.sample(range(self.args.accounts), self.args.follows + 1)
            followed = [a for a in others if a != user][: self.args.follows]
            self.followed.append(followed)
            first = user * self.args.follows + 1
            rows += [
                (first + k, user + 1, target + 1, "accepted", True, False, when)
                for k, target in enumerate(followed)
            ]
        return rows

    def feeds(self) -> Iterator[list[tuple[int, int]]]:
        """Each local user's newest FEED_SIZE statuses that fan-out would have delivered."""
        batch: list[tuple[int, int]] = []
        for user, followed in enumerate(self.followed):
            readers_of = {user, *followed}
            sources = [reversed(self.by_author[a]) for a in readers_of]
            kept = 0
            for status_id in heapq.merge(*sources, reverse=True):
                if self._outside_the_thread(status_id, user, readers_of):
                    continue
                batch.append((user + 1, status_id))
                kept += 1
                if kept == FEED_SIZE:
                    break
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _outside_the_thread(self, status_id: int, user: int, readers_of: set[int]) -> bool:
        """A reply to someone the user does not follow (`distribute` keeps it out)."""
        parent = self.parent_author.get(status_id)
        if parent is None or parent in readers_of:
            return False
        author = self.author_of[status_id]
        return author not in (user, parent) and self.mentioned.get(status_id) != user

    def mentions(self) -> list[tuple[int, int, bool]]:
        return [(status, account + 1, False) for status, account in self.mentioned.items()]


ACCOUNT_COLUMNS = (
    "id",
    "username",
    "username_key",
    "domain",
    "uri",
    "url",
    "followers_url",
    "actor_type",
    "is_instance_actor",
    "display_name",
    "note",
    "is_locked",
    "is_discoverable",
    "is_indexable",
    "is_admin",
    "created_at",
)
STATUS_COLUMNS = (
    "id",
    "uri",
    "url",
    "account_id",
    "in_reply_to_id",
    "in_reply_to_uri",
    "reblog_of_id",
    "content",
    "text",
    "spoiler_text",
    "sensitive",
    "visibility",
    "language",
    "context_uri",
    "created_at",
    "edited_at",
)
FAVOURITE_COLUMNS = ("id", "account_id", "status_id", "uri", "created_at")
FOLLOW_COLUMNS = (
    "id",
    "account_id",
    "target_account_id",
    "state",
    "show_reblogs",
    "notify",
    "created_at",
)
Writer = Callable[[str, tuple[str, ...], list[tuple[Any, ...]]], None]


def load(data: DataSet, write: Writer) -> str:
    """Every table's rows through `write`, with progress; a one-line summary."""
    started = time.perf_counter()

    def progress(what: str) -> None:
        print(f"  {time.perf_counter() - started:5.0f} s  {what}", flush=True)

    write("accounts", ACCOUNT_COLUMNS, data.accounts())
    progress(f"accounts: {data.args.accounts:,}")
    done = 0
    for batch in data.statuses():
        write("statuses", STATUS_COLUMNS, batch)
        done += len(batch)
        if done % (4 * BATCH) == 0 or done == data.args.statuses:
            progress(f"statuses: {done:,}")
    write("status_tags", ("status_id", "name"), data.tags)
    write("mentions", ("status_id", "account_id", "silent"), data.mentions())
    favourites = data.favourites()
    write("favourites", FAVOURITE_COLUMNS, favourites)
    follows = data.follows()
    write("follows", FOLLOW_COLUMNS, follows)
    progress(
        f"tags {len(data.tags):,}, mentions {len(data.mentioned):,}, favourites "
        f"{len(favourites):,}, follows {len(follows):,}"
    )
    entries = 0
    for batch in data.feeds():
        write("home_feed", ("account_id", "status_id"), batch)
        entries += len(batch)
    progress(f"home feed entries: {entries:,}")
    return f"{data.args.statuses:,} statuses, {len(follows):,} follows, {entries:,} feed entries"


def schema_head() -> str:
    """The newest migration this checkout knows (the cache key changes with it)."""
    config = AlembicConfig()
    config.set_main_option(
        "script_location", str(Path(server.__file__).parent / "storage" / "migrations")
    )
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def dataset_key(args: argparse.Namespace) -> str:
    return f"{_shape(args)}-{schema_head()}"


def _shape(args: argparse.Namespace) -> str:
    sizes = f"{args.statuses}-{args.accounts}-{args.local}-{args.follows}"
    return f"kith-timeline-{sizes}-v{DATASET_VERSION}"


async def migrate(data_dir: Path, url: str | None = None) -> None:
    """A fresh database at the schema's head, made the way `kith init` makes it."""
    overrides: dict[str, object] = {"storage.data_dir": str(data_dir)}
    if url:
        overrides["database.url"] = url
    config = load_config(None, environ={}, overrides=overrides, cwd=data_dir)
    db = await open_database(config, initialize_empty=True)
    await db.dispose()


# --- SQLite: a cached file --------------------------------------------------------------------


def sqlite_dataset(args: argparse.Namespace) -> Path:
    """The cached database file, built first if missing (into a side directory, then renamed)."""
    cached = Path(tempfile.gettempdir()) / dataset_key(args)
    if (cached / "kith.db").exists():
        return cached / "kith.db"
    partial = cached.with_name(cached.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    print(f"building the data set in {cached} (once) …", flush=True)
    started = time.perf_counter()
    asyncio.run(migrate(partial))
    connection = sqlite3.connect(partial / "kith.db")
    connection.execute("PRAGMA synchronous=OFF")

    def write(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        marks = ",".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})"  # noqa: S608
        connection.executemany(sql, rows)

    summary = load(DataSet(args, _sqlite_time), write)
    connection.commit()
    connection.execute("ANALYZE")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    shutil.rmtree(cached, ignore_errors=True)
    partial.rename(cached)
    for stale in cached.parent.glob(f"{_shape(args)}-*"):
        if stale != cached:  # the same data set at another schema revision
            shutil.rmtree(stale, ignore_errors=True)
    size = (cached / "kith.db").stat().st_size / 2**20
    print(f"  built: {summary}, {size:,.0f} MiB in {time.perf_counter() - started:.0f} s")
    return cached / "kith.db"


def _sqlite_time(moment: datetime) -> str:
    """SQLAlchemy's text for a DateTime on SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


# --- PostgreSQL: a cached database on the given server -----------------------------------------


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def postgres_dataset(args: argparse.Namespace, server_url: str) -> str:
    """The SQLAlchemy URL of the cached database, built first if missing or unfinished."""
    key = dataset_key(args)
    name = "kith_bench_tl_" + hashlib.sha256(key.encode()).hexdigest()[:12]
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        marker = await admin.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            name,
        )
        if marker == key:
            return url
        print(f"building the data set in PostgreSQL database {name} (once) …", flush=True)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        await migrate(Path(scratch), url)
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        loop = asyncio.get_running_loop()

        def write(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
            copy = connection.copy_records_to_table(table, records=rows, columns=columns)
            asyncio.run_coroutine_threadsafe(copy, loop).result()

        summary = await asyncio.to_thread(load, DataSet(args, lambda moment: moment), write)
        await connection.execute("ANALYZE")
        await connection.execute(f"COMMENT ON DATABASE \"{name}\" IS '{key}'")
    finally:
        await connection.close()
    print(f"  built: {summary} in {time.perf_counter() - started:.0f} s", flush=True)
    return url


# --- bare-SQL bounds, measured in this process ----------------------------------------------


Statement = tuple[str, Any]


class SqlBounds:
    """Replays SQL with the bare driver: stdlib sqlite3, or asyncpg on PostgreSQL."""

    def __init__(self, sqlite_path: Path | None, postgres_url: str | None) -> None:
        self.sqlite_path = sqlite_path
        self.postgres_url = postgres_url

    async def feed_page(self, users: int, seconds: float = 1.0) -> dict[str, float]:
        """The feed page alone: home_feed index range + 20 status rows, rotating users."""
        if self.sqlite_path is not None:
            sql = _FEED_SQL.format(viewer="?", limit="?")
            pages = [[(sql, (user, PAGE))] for user in range(1, users + 1)]
        else:
            sql = _FEED_SQL.format(viewer="$1", limit="$2")
            pages = [[(sql, (user, PAGE))] for user in range(1, users + 1)]
        return await self.replay(pages, seconds)

    async def replay(self, pages: list[list[Statement]], seconds: float = 1.0) -> dict[str, float]:
        """Per-page times of `pages` run round-robin for about `seconds` (after one pass)."""
        if self.sqlite_path is not None:
            return _replay_sqlite(self.sqlite_path, pages, seconds)
        assert self.postgres_url is not None
        connection = await asyncpg.connect(_asyncpg_dsn(self.postgres_url))
        try:
            times: list[float] = []
            deadline = time.perf_counter() + seconds
            for n in range(10**9):
                page = pages[n % len(pages)]
                started = time.perf_counter()
                for sql, parameters in page:
                    await connection.fetch(sql, *parameters)
                if n >= len(pages):
                    times.append(time.perf_counter() - started)
                    if time.perf_counter() > deadline:
                        break
            return _page_figures(times)
        finally:
            await connection.close()


def _replay_sqlite(path: Path, pages: list[list[Statement]], seconds: float) -> dict[str, float]:
    connection = sqlite3.connect(path, isolation_level=None)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    for n in range(10**9):
        page = pages[n % len(pages)]
        started = time.perf_counter()
        for sql, parameters in page:
            connection.execute(sql, parameters).fetchall()
        if n >= len(pages):  # the first pass reads the pages into the cache
            times.append(time.perf_counter() - started)
            if time.perf_counter() > deadline:
                break
    connection.close()
    return _page_figures(times)


def _page_figures(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(times, 0.5) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "per_s": len(times) / sum(times),
    }


async def capture_pages(node: BenchNode, tokens: list[str]) -> list[list[Statement]]:
    """Every statement the endpoint runs for one page per token, as sent to the driver."""
    pages: list[list[Statement]] = []
    current: list[Statement] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            current.append((statement, tuple(parameters)))

    engine = node.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for token in tokens:
            current = []
            async with node.db.read() as conn:
                grant = await authenticate(conn, token, datetime.now(UTC))
                assert grant is not None
                assert grant.account is not None
                found = await home_timeline(conn, grant.account, PageRequest())
                await Presenter(conn, node.urls, grant.account).statuses(found)
            pages.append(current)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return pages


# --- the other process: the load generator -----------------------------------------------------


def load_generator(pipe: Connection, cpu: int | None) -> None:
    """Entry point of the load-generator process."""
    pin(cpu)
    asyncio.run(_generate(pipe))


async def _generate(pipe: Connection) -> None:
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command is None:
            return
        pipe.send(await _load(*command))


async def _load(
    url: str, tokens: list[str], clients: int, warm_s: float, seconds: float
) -> dict[str, Any]:
    """`clients` keep-alive clients, each rotating over its share of the tokens; with
    `seconds` = 0, one request per token (the pass that warms every token)."""
    latencies: list[float] = []
    counts = {"warm": 0, "failures": 0}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(offset: int, until: float, record: bool, once: bool = False) -> None:
            n = offset
            while time.perf_counter() < until and not (once and n >= len(tokens)):
                headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
                n += clients
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    body = await response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200 or body[:1] != b"[":
                    counts["failures"] += 1
                elif record:
                    latencies.append(elapsed)
                else:
                    counts["warm"] += 1

        if seconds == 0:
            await asyncio.gather(*(client(i, float("inf"), False, True) for i in range(clients)))
            return {"latencies": [], "wall": 0.0, **counts}
        warm = time.perf_counter() + warm_s
        await asyncio.gather(*(client(i, warm, False) for i in range(clients)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(client(i, until, True) for i in range(clients)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "wall": wall, **counts}


# --- this process: the node and the measurements ---------------------------------------------


async def start(args: argparse.Namespace, data_dir: Path) -> tuple[BenchNode, SqlBounds]:
    """The node on a copy of the cached SQLite data set, or on the PostgreSQL one."""
    settings: dict[str, object] = {
        "api__requests_per_window": 10**9,
        "api__anonymous_requests_per_window": 10**9,
    }
    if args.postgres:
        url = await postgres_dataset(args, args.postgres)
        settings["database__url"] = url
        bounds = SqlBounds(None, url)
    else:
        cached = await asyncio.to_thread(sqlite_dataset, args)
        started = time.perf_counter()
        await asyncio.to_thread(shutil.copy, cached, data_dir / "kith.db")
        print(f"copied the data set in {time.perf_counter() - started:.1f} s", flush=True)
        bounds = SqlBounds(data_dir / "kith.db", None)
    return await start_node(data_dir, **settings), bounds


async def tokens_for(node: BenchNode, users: int) -> list[str]:
    """One read token per local user (earlier runs' tokens are removed first)."""
    async with node.db.transaction() as conn:
        await conn.execute(text("DELETE FROM access_tokens WHERE name = 'bench'"))
        now = datetime.now(UTC)
        scopes = parse_scopes("read")
        return [
            await create_token(conn, user, scopes, "bench", now) for user in range(1, users + 1)
        ]


async def ask(pipe: Connection, *command: Any) -> dict[str, Any]:
    pipe.send(command)
    return await asyncio.to_thread(pipe.recv)


async def measure(args: argparse.Namespace) -> None:
    node_cpu, helper_cpu = split_cpus()
    pin(node_cpu)
    if node_cpu is None:
        print("one CPU only: node and load generator share it (figures are pessimistic)")
    context = multiprocessing.get_context("spawn")
    pipe, child = context.Pipe()
    helper = context.Process(target=load_generator, args=(child, helper_cpu), daemon=True)
    with tempfile.TemporaryDirectory(prefix="kith-bench-timeline-") as scratch:
        node, bounds = await start(args, Path(scratch))
        helper.start()
        try:
            tokens = await tokens_for(node, args.local)
            pages = await capture_pages(node, tokens[: min(len(tokens), 300)])
            url = f"{node.base_url}/api/v1/timelines/home"
            rows = [
                await one_run(run, node, pipe, bounds, pages, url, tokens, args)
                for run in range(1, args.runs + 1)
            ]
        finally:
            pipe.send(None)
            await node.stop()
            helper.join(10)
    summarise(rows, pages, args)


async def one_run(
    run: int,
    node: BenchNode,
    pipe: Connection,
    bounds: SqlBounds,
    pages: list[list[Statement]],
    url: str,
    tokens: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Warm every token, measure the bounds, then 1 and 16 clients."""
    warmed = await ask(pipe, url, tokens, 16, 0.0, 0.0)
    row: dict[str, Any] = {
        "feed": await bounds.feed_page(args.local),
        "page": await bounds.replay(pages),
        "warm_failures": warmed["failures"],
    }
    for clients in CLIENTS:
        cpu = time.process_time()
        seen = await ask(pipe, url, tokens, clients, 1.0, args.seconds)
        cpu = time.process_time() - cpu
        latencies = seen["latencies"] or [float("nan")]
        row[clients] = {
            "per_s": len(seen["latencies"]) / seen["wall"],
            "p50": percentile(latencies, 0.5) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "cpu_ms": cpu / max(1, len(seen["latencies"]) + seen["warm"]) * 1000,
            "failures": seen["failures"],
        }
        print_row(run, clients, row)
    return row


def print_row(run: int, clients: int, row: dict[str, Any]) -> None:
    if run == 1 and clients == CLIENTS[0]:
        print(
            "\n'node ms': the node process's CPU per request (HTTP, auth, SQL, entities, JSON);"
            "\n'feed SQL' / 'page SQL': the bare-SQL bounds of the same run, per page.\n"
        )
        print(
            f"{'run':>3} {'clients':>7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'node ms':>8}"
            f" {'feed SQL ms':>11} {'page SQL ms':>11}  failures"
        )
    figures = row[clients]
    print(
        f"{run:>3} {clients:>7} {figures['per_s']:>7,.0f} {figures['p50']:>7.2f}"
        f" {figures['p99']:>7.2f} {figures['cpu_ms']:>8.2f} {row['feed']['p50_ms']:>11.3f}"
        f" {row['page']['p50_ms']:>11.3f}  {figures['failures'] + row['warm_failures']}",
        flush=True,
    )


def summarise(
    rows: list[dict[str, Any]], pages: list[list[Statement]], args: argparse.Namespace
) -> None:
    def median(*path: Any) -> float:
        values = []
        for row in rows:
            value: Any = row
            for key in path:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    database = "PostgreSQL" if args.postgres else "SQLite"
    statements = statistics.mean(len(page) for page in pages)
    print(
        f"\nmedian of {len(rows)} runs on {database}: {args.statuses:,} statuses, "
        f"{args.accounts:,} accounts, {args.local:,} local users following {args.follows} each:\n"
    )
    print(f"{'figure':<58}{'value':>10}  target")
    print("-" * 84)
    feed_per_s, page_per_s = median("feed", "per_s"), median("page", "per_s")
    print(
        f"{'bare-SQL bound: feed page (index range + 20 rows), ms':<58}"
        f"{median('feed', 'p50_ms'):>10.3f}  bound"
    )
    print(f"{'  pages/s on one core':<58}{feed_per_s:>10,.0f}")
    print(
        f"{f'bare SQL of a whole page ({statements:.1f} statements), ms':<58}"
        f"{median('page', 'p50_ms'):>10.3f}  bound"
    )
    print(f"{'  pages/s on one core':<58}{page_per_s:>10,.0f}")
    for clients in CLIENTS:
        per_s, p99 = median(clients, "per_s"), median(clients, "p99")
        target = TARGET_P99_MS[clients]
        print(f"{f'{clients} client(s): requests/s':<58}{per_s:>10,.0f}")
        print(
            f"{'  share of the feed-page bound / of the whole-page bound':<58}"
            f"{per_s / feed_per_s:>9.1%} / {per_s / page_per_s:.1%}"
        )
        print(f"{'  p50 (ms)':<58}{median(clients, 'p50'):>10.2f}")
        print(
            f"{'  p99 (ms)':<58}{p99:>10.2f}  ≤ {target:g}: "
            f"{verdict(p99, target, higher_is_better=False)}"
        )
        print(f"{'  node CPU per request (ms)':<58}{median(clients, 'cpu_ms'):>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statuses", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--local", type=int, default=1_000, help="local users (one token each)")
    parser.add_argument("--follows", type=int, default=200, help="accounts each local user follows")
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--runs", type=int, default=3, help="medians are printed")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="a PostgreSQL server (postgresql+asyncpg://user@host:port/db) to build and run on",
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
