"""SQLite for SQLAlchemy's async engine, with statements run on the event loop's own thread.

aiosqlite hands every call to a worker thread and back: three thread hops per statement, which
cost 150 µs each on small virtual machines — more than SQLite takes to answer a query from its
page cache (performance.md A.5: the hop, not SQL, is most of the async cost). Here statements
run inline; only what can wait long goes to the connection's thread: COMMIT (the fsync that
makes a write durable), BEGIN IMMEDIATE (it may wait on another process's write lock) and
closing.
Within this process writers are already queued one at a time (`Database`), so an inline
statement never waits on a lock held by this process.

Even inline, SQLAlchemy's adapter awaits aiosqlite's cursor three times per statement, each a
greenlet switch and a coroutine: 75–90 µs per statement where SQLite itself takes 2–4 µs. So
the cursor SQLAlchemy gets (`InlineCursor`) is sqlite3's own, called directly; only the
statements that may wait are awaited, on the thread.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_ITER_CHUNK_SIZE = 64
_THREADED_CALLS = frozenset({"commit", "close"})
# A deferred BEGIN takes no lock; these wait (up to busy_timeout) for another process's writer.
_WAITING_BEGINS = ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection with the thread kept for commits and BEGIN only."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None or _waits(fn, args):
            return await super()._execute(fn, *args, **kwargs)
        return fn(*args, **kwargs)


def _waits(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, sqlite3.Connection) and fn.__name__ in _THREADED_CALLS:
        return True
    sql = args[0] if args and isinstance(args[0], str) else ""
    return _is_waiting_begin(sql)


def _is_waiting_begin(sql: str) -> bool:
    return sql[:40].lstrip().upper().startswith(_WAITING_BEGINS)


class InlineCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor over a plain sqlite3 cursor, called without awaiting.

    Rows are fetched at once, as SQLAlchemy's adapter does; a statement that may wait for
    another process's lock runs on the connection's thread."""

    __slots__ = ()
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = self._connection._conn.cursor()
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        cursor = self._cursor
        try:
            if _is_waiting_begin(operation):
                await_(self._connection._execute(cursor.execute, operation, parameters or ()))
            else:
                cursor.execute(operation, parameters or ())
                await_(_done())  # SQLAlchemy's async engine insists on one await per call
            if cursor.description:
                self._rows = collections.deque(cursor.fetchall())
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            self._cursor.executemany(operation, seq_of_parameters)
            await_(_done())
        except Exception as error:
            self._adapt_connection._handle_exception(error)


def _done() -> asyncio.Future[None]:
    """An awaitable that is already complete: awaiting it costs two greenlet switches."""
    global _DONE
    if _DONE is None or _DONE.get_loop() is not asyncio.get_running_loop():
        _DONE = asyncio.get_running_loop().create_future()
        _DONE.set_result(None)
    return _DONE


_DONE: asyncio.Future[None] | None = None


class InlineAdaptedConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = InlineCursor


class InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module SQLAlchemy's aiosqlite dialect is given (`create_async_engine(module=)`):
    its connections hand out `InlineCursor`s."""

    def connect(self, *args: Any, **kwargs: Any) -> InlineAdaptedConnection:
        return InlineAdaptedConnection(self, await_(connect(*args, **kwargs)))


def dbapi() -> InlineDBAPI:
    return InlineDBAPI(aiosqlite, sqlite3)


def connect(database: str, **options: Any) -> InlineConnection:
    """A connection (`InlineDBAPI.connect`): opened in its thread, then shared with the loop's
    thread (hence `check_same_thread=False`; sqlite3 is built thread-safe)."""
    options["check_same_thread"] = False
    connection = InlineConnection(partial(sqlite3.connect, database, **options), _ITER_CHUNK_SIZE)
    connection._thread.daemon = True
    return connection
