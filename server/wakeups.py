"""Waking the inbox and delivery workers when work is queued, in this process and in others.

In one process the workers sleep on asyncio events that whoever queues work sets, and poll
every second besides. On PostgreSQL several processes share the queues (`kith serve --role
web` stores inbox items and queues deliveries that `--role worker` processes run), so the
event of another process must be set too: after the commit, a NOTIFY on `kith_work` names
the queue, and every process that runs workers LISTENs and wakes its own.

The NOTIFY is sent after the commit, on a connection of its own, and coalesced: while one is
on its way, further wake-ups of the same queue join the next. A lost one (the connection
drops) costs what it cost before: the workers' one-second poll finds the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import asyncpg

from server.storage.engine import Database

log = logging.getLogger("kith.wakeups")

WORK_CHANNEL = "kith_work"
INBOX = "inbox"
DELIVERY = "delivery"
_NOTIFY = "SELECT pg_notify($1, $2)"
_RETRY_S = 1.0
_CONNECT_TIMEOUT_S = 10


class Wakeups:
    """Who to wake when an inbox item is stored or a delivery queued."""

    def __init__(self, db: Database, inbox: asyncio.Event, delivery: asyncio.Event) -> None:
        self._local = {INBOX: inbox, DELIVERY: delivery}
        self._shared = not db.is_sqlite  # on SQLite one process owns the queues
        self._dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        # A process hears its own NOTIFYs; its workers were woken already.
        self._sender = secrets.token_hex(6)
        self._unsent: set[str] = set()
        self._ready = asyncio.Event()
        self._running = False

    def inbox_stored(self) -> None:
        """An inbox item was committed: wake an inbox worker."""
        self._wake(INBOX)

    def delivery_queued(self) -> None:
        """Deliveries were committed: wake a delivery worker."""
        self._wake(DELIVERY)

    def _wake(self, queue: str) -> None:
        self._local[queue].set()
        if self._running:
            self._unsent.add(queue)
            self._ready.set()

    async def run(self, listen: bool) -> None:
        """Tell other processes of the work queued here until cancelled; with `listen`, wake
        this process's workers when another process queues work. On SQLite, nothing to do."""
        if not self._shared:
            return
        self._running = True
        try:
            while True:
                try:
                    connection = await asyncpg.connect(self._dsn, timeout=_CONNECT_TIMEOUT_S)
                except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                    log.warning("cannot reach the database to signal work, retrying: %s", exc)
                    await asyncio.sleep(_RETRY_S)
                    continue
                try:
                    await self._serve(connection, listen)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("lost the work-signal connection, reconnecting: %s", exc)
                finally:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
                await asyncio.sleep(_RETRY_S)
        finally:
            self._running = False

    async def _serve(self, connection: asyncpg.Connection, listen: bool) -> None:
        connection.add_termination_listener(lambda _: self._ready.set())
        if self._unsent:  # left by a connection that was lost
            self._ready.set()
        if listen:
            await connection.add_listener(WORK_CHANNEL, self._heard)
            # Work queued while this process was not listening (starting, reconnecting).
            for event in self._local.values():
                event.set()
        while True:
            await self._ready.wait()
            self._ready.clear()
            if connection.is_closed():
                raise asyncpg.InterfaceError("the connection closed")
            queues, self._unsent = self._unsent, set()
            try:
                for queue in sorted(queues):
                    await connection.execute(_NOTIFY, WORK_CHANNEL, f"{queue} {self._sender}")
            except BaseException:
                self._unsent |= queues  # sent on the next connection
                raise

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        queue, _, sender = payload.partition(" ")
        event = self._local.get(queue)
        if event is not None and sender != self._sender:
            event.set()
