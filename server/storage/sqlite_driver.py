"""An aiosqlite connection that runs statements on the event loop's own thread.

aiosqlite hands every call to a worker thread and back: three thread hops per statement, which
cost 150 µs each on small virtual machines — more than SQLite takes to answer a query from its
page cache (performance.md A.5: the hop, not SQL, is most of the async cost). Here statements
run inline; only what can wait long goes to the connection's thread: COMMIT (the fsync that
makes a write durable), BEGIN IMMEDIATE (it may wait on another process's write lock) and
closing.
Within this process writers are already queued one at a time (`Database`), so an inline
statement never waits on a lock held by this process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite

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
    return sql.lstrip().upper().startswith(_WAITING_BEGINS)


def connect(database: str, **options: Any) -> InlineConnection:
    """SQLAlchemy's `async_creator_fn`: the connection is opened in its thread, then shared
    with the loop's thread (hence `check_same_thread=False`; sqlite3 is built thread-safe)."""
    options["check_same_thread"] = False
    connection = InlineConnection(partial(sqlite3.connect, database, **options), _ITER_CHUNK_SIZE)
    connection._thread.daemon = True
    return connection
