"""The database engine and units of work, with SQLite tuned for durability and concurrency."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncTransaction,
    create_async_engine,
)

from server.config import DatabaseConfig
from server.storage import sqlite_driver
from server.storage.direct import DirectEngine

_EVENTS = "kith_events"
_in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "kith_in_transaction", default=False
)


@dataclass(frozen=True)
class EventChannel:
    """Where committed events travel between processes sharing a PostgreSQL database."""

    name: str
    # A transaction's events as NOTIFY payloads (each under PostgreSQL's 8,000-byte limit).
    encode: Callable[[list[Any]], list[str]]


_NOTIFY = text("SELECT pg_notify(:channel, :payload)")
# A group commit closes when no writer waits, or at this many members or this age.
_GROUP_MAX = 64
_GROUP_WINDOW_S = 0.02


def _is_full(batch: _Batch) -> bool:
    age = asyncio.get_running_loop().time() - batch.opened_at
    return batch.members >= _GROUP_MAX or age > _GROUP_WINDOW_S


@dataclass
class _Batch:
    """One SQLite transaction shared by the units of work that queued up for it."""

    conn: AsyncConnection
    transaction: AsyncTransaction
    done: asyncio.Future[None]
    opened_at: float
    members: int = 0


_LISTEN_RETRY_S = 1.0
log = logging.getLogger("kith.storage")


def record_event(conn: AsyncConnection, event: Any) -> None:
    """Publish `event` once the surrounding transaction commits."""
    events = conn.info.get(_EVENTS)
    if events is None:
        raise RuntimeError("events can only be recorded inside Database.transaction()")
    events.append(event)


class Database:
    """One engine plus the two kinds of unit of work the node uses.

    `transaction()` is for work that writes: on SQLite it starts with BEGIN IMMEDIATE, so a
    writer waits (up to the busy timeout) at the start instead of failing half-way when a
    read lock cannot be upgraded. `read()` is for work that only reads.

    Domain code records events (for streaming clients) on the transaction with `record_event`;
    they reach `event_sink` only after the commit, so nobody hears of what was rolled back.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._writer = engine.execution_options(kith_sqlite_begin="BEGIN IMMEDIATE")
        self.event_sink: Callable[[list[Any]], None] | None = None
        # Set on PostgreSQL by whoever listens (streaming): events then travel by NOTIFY.
        self.event_channel: EventChannel | None = None
        # Told how long each unit of work took, ("write" or "read", seconds): the metrics.
        self.timing: Callable[[str, float], None] | None = None
        # SQLite has one writer at a time. Queueing writers here, rather than in SQLite's busy
        # handler (which sleeps in steps of up to 100 ms), keeps the lock busy instead of idle;
        # `_grouped` then lets the queue share commits.
        self._commit_lock = asyncio.Lock()
        self._writers_waiting = 0
        self._batch: _Batch | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A read-write unit of work, committed when the block ends without an error."""
        if _in_transaction.get():
            raise RuntimeError("a write transaction cannot open another one (it would deadlock)")
        events: list[Any] = []
        token = _in_transaction.set(True)
        started = time.perf_counter()
        try:
            async with self._unit_of_work() as conn:
                conn.info[_EVENTS] = events
                try:
                    yield conn
                    if events and self.event_channel is not None:
                        # NOTIFY is transactional: every listening process, this one too,
                        # hears of the events only if the commit succeeds.
                        for payload in self.event_channel.encode(events):
                            await conn.execute(
                                _NOTIFY, {"channel": self.event_channel.name, "payload": payload}
                            )
                finally:
                    conn.info.pop(_EVENTS, None)
        finally:
            _in_transaction.reset(token)
            if self.timing is not None:
                self.timing("write", time.perf_counter() - started)
        if events and self.event_sink is not None and self.event_channel is None:
            self.event_sink(events)

    @asynccontextmanager
    async def savepoint(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """Part of a transaction that an error undoes alone (its events too); the error
        still propagates."""
        events = conn.info.get(_EVENTS)
        recorded = len(events) if events is not None else 0
        nested = await conn.begin_nested()
        try:
            yield
        except BaseException:
            await nested.rollback()
            if events is not None:
                del events[recorded:]
            raise
        await nested.commit()

    @asynccontextmanager
    async def _unit_of_work(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends without an error."""
        if not self.is_sqlite:
            async with self._writer.begin() as conn:
                yield conn
            return
        async with self._grouped() as conn:
            yield conn

    @asynccontextmanager
    async def _grouped(self) -> AsyncIterator[AsyncConnection]:
        """Group commit on SQLite: the units of work that queue up while one runs or commits
        join one transaction, each in its own savepoint, and one COMMIT (one fsync) makes
        them all durable. Each still ends only after that COMMIT, and one that fails rolls
        back to its savepoint alone. (The writers are already serialised; this only stops
        paying a disk flush for each.)"""
        self._writers_waiting += 1
        try:
            await self._commit_lock.acquire()
        finally:
            self._writers_waiting -= 1
        batch: _Batch | None = None
        joined = False
        try:
            batch = self._batch or await self._open_batch()
            savepoint = await batch.conn.begin_nested()
            try:
                yield batch.conn
            except BaseException:
                await savepoint.rollback()
                raise
            await savepoint.commit()
            batch.members += 1
            joined = True
        finally:
            try:
                if batch is not None:
                    if self._writers_waiting == 0 or _is_full(batch):
                        await self._close_batch(batch)
                    else:
                        # The next writer closes it; this makes sure of it even if that
                        # writer is cancelled while it waits.
                        asyncio.get_running_loop().create_task(self._close_later(batch))
            finally:
                self._commit_lock.release()
        if joined:
            assert batch is not None
            await asyncio.shield(batch.done)

    async def _open_batch(self) -> _Batch:
        conn = await self._writer.connect()
        try:
            transaction = await conn.begin()
        except BaseException:
            await conn.close()
            raise
        loop = asyncio.get_running_loop()
        self._batch = _Batch(conn, transaction, loop.create_future(), loop.time())
        return self._batch

    async def _close_later(self, batch: _Batch) -> None:
        async with self._commit_lock:
            if self._batch is batch:
                try:
                    await self._close_batch(batch)
                except Exception:
                    log.exception("a group commit failed")

    async def _close_batch(self, batch: _Batch) -> None:
        """COMMIT what joined (or roll back an empty transaction) and tell every member."""
        self._batch = None
        try:
            if batch.members:
                await batch.transaction.commit()
            else:
                await batch.transaction.rollback()
        except BaseException as exc:
            batch.done.set_exception(exc)
            batch.done.exception()  # retrieved: its members may all have been cancelled
            raise
        else:
            batch.done.set_result(None)
        finally:
            await batch.conn.close()

    async def listen(self, channel: str, on_payload: Callable[[str], None]) -> None:
        """Hand every NOTIFY on `channel` to `on_payload` until cancelled (PostgreSQL only);
        a lost connection is re-opened."""
        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                connection = await asyncpg.connect(dsn, timeout=10)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot listen for events, retrying: %s", exc)
                await asyncio.sleep(_LISTEN_RETRY_S)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _, lost=lost: lost.set())
            try:
                await connection.add_listener(channel, lambda *args: on_payload(args[-1]))
                await lost.wait()
                log.warning("lost the event connection, reconnecting")
            finally:
                await connection.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work."""
        started = time.perf_counter()
        try:
            if not self.is_sqlite:
                async with self.engine.connect() as conn:
                    yield conn
                return
            # SQLAlchemy's `async with` closes the connection in a new task it shields from
            # cancellation: a suspension of every read while it still holds its pooled
            # connection, so sixteen concurrent requests held up to sixteen connections and the
            # pool kept opening and closing overflow ones. On SQLite closing runs inline and
            # cannot be interrupted, so it is awaited directly.
            conn = await self.engine.connect()
            try:
                yield conn
            finally:
                await conn.close()
        finally:
            if self.timing is not None:
                self.timing("read", time.perf_counter() - started)

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(url: str, config: DatabaseConfig) -> Database:
    """An engine for `url` (already resolved by the config loader)."""
    if url.startswith("sqlite"):
        engine = DirectEngine(
            create_async_engine(
                url,
                module=sqlite_driver.dbapi(),
                connect_args={"timeout": config.busy_timeout_ms / 1000},
            ).sync_engine
        )
        _tune_sqlite(engine, config)
    else:
        server_settings = {"application_name": "kith"}
        if config.statement_timeout_ms:
            server_settings["statement_timeout"] = str(config.statement_timeout_ms)
        engine = create_async_engine(
            url,
            pool_size=config.pool_size,
            max_overflow=config.pool_size,
            pool_pre_ping=True,
            pool_timeout=30,
            connect_args={"server_settings": server_settings, "timeout": 10},
        )
    return Database(engine)


def _tune_sqlite(engine: AsyncEngine, config: DatabaseConfig) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: object, _record: object) -> None:
        # Take over BEGIN from the driver so that we choose DEFERRED or IMMEDIATE.
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(config.busy_timeout_ms)}")
        # FULL: a commit is on disk before we acknowledge it (payments and inbox 202s rely
        # on that); WAL keeps it cheap.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("kith_sqlite_begin", "BEGIN"))
