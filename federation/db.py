"""What federation needs of the database: units of work (the server provides them) and upserts."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


class UnitOfWork(Protocol):
    """Opens transactions; `server.storage.engine.Database` is the implementation."""

    is_sqlite: bool

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

    def savepoint(self, conn: AsyncConnection) -> AbstractAsyncContextManager[None]: ...


async def upsert(
    conn: AsyncConnection,
    table: Table,
    values: Mapping[str, Any],
    keys: Iterable[str],
    update: Iterable[str] | None = None,
) -> None:
    """Insert a row, or update `update` columns (default: all but `keys`) when it exists."""
    keys = tuple(keys)
    columns = tuple(update) if update is not None else tuple(c for c in values if c not in keys)
    statement = _upsert_statement(conn.dialect.name, table, keys, columns)
    await conn.execute(statement, dict(values))


async def insert_ignoring_duplicates(
    conn: AsyncConnection, table: Table, values: Mapping[str, Any], keys: Iterable[str]
) -> bool:
    """Insert unless a row with the same `keys` exists; True when this call inserted it."""
    statement = _upsert_statement(conn.dialect.name, table, tuple(keys), ())
    result = await conn.execute(statement, dict(values))
    return result.rowcount == 1


@functools.cache
def _upsert_statement(
    dialect_name: str, table: Table, keys: tuple[str, ...], columns: tuple[str, ...]
) -> Any:
    """Built once per shape and executed with the row as parameters: building an upsert
    (its `excluded` alias above all) costs more than running it."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    # `kith_direct`: SQLite may run it past SQLAlchemy's execution machinery (one statement
    # in a tenth of the time: server/storage/direct.py).
    statement = dialect.insert(table).execution_options(kith_direct=True)
    if columns:
        return statement.on_conflict_do_update(
            index_elements=list(keys), set_={c: statement.excluded[c] for c in columns}
        )
    return statement.on_conflict_do_nothing(index_elements=list(keys))
