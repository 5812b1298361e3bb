"""The database engine and units of work, with SQLite tuned for durability and concurrency."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.config import DatabaseConfig
from server.storage import sqlite_driver

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
        # SQLite has one writer at a time. Queueing writers here, rather than in SQLite's busy
        # handler (which sleeps in steps of up to 100 ms), keeps the lock busy instead of idle.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A read-write unit of work, committed when the block ends without an error."""
        if _in_transaction.get():
            raise RuntimeError("a write transaction cannot open another one (it would deadlock)")
        events: list[Any] = []
        token = _in_transaction.set(True)
        try:
            async with self._serialised(), self._unit_of_work() as conn:
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
        if events and self.event_sink is not None and self.event_channel is None:
            self.event_sink(events)

    @asynccontextmanager
    async def _unit_of_work(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends without an error."""
        if not self.is_sqlite:
            async with self._writer.begin() as conn:
                yield conn
            return
        # As in `read()`: SQLAlchemy's `async with` ends the connection in a new, shielded
        # task (a suspension per write). On SQLite only COMMIT waits (on the disk, in the
        # connection's thread); closing runs inline and cannot be interrupted.
        conn = await self._writer.connect()
        try:
            transaction = await conn.begin()
            try:
                yield conn
            except BaseException:
                await transaction.rollback()
                raise
            await transaction.commit()
        finally:
            await conn.close()

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
    async def _serialised(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work."""
        if not self.is_sqlite:
            async with self.engine.connect() as conn:
                yield conn
            return
        # SQLAlchemy's `async with` closes the connection in a new task it shields from
        # cancellation: a suspension of every read while it still holds its pooled connection,
        # so sixteen concurrent requests held up to sixteen connections and the pool kept
        # opening and closing overflow ones. On SQLite closing runs inline and cannot be
        # interrupted, so it is awaited directly.
        conn = await self.engine.connect()
        try:
            yield conn
        finally:
            await conn.close()

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(url: str, config: DatabaseConfig) -> Database:
    """An engine for `url` (already resolved by the config loader)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            connect_args={
                "timeout": config.busy_timeout_ms / 1000,
                "async_creator_fn": sqlite_driver.connect,
            },
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
