"""What federation needs of the database: units of work (the server provides them) and upserts."""

from __future__ import annotations

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


async def upsert(
    conn: AsyncConnection,
    table: Table,
    values: Mapping[str, Any],
    keys: Iterable[str],
    update: Iterable[str] | None = None,
) -> None:
    """Insert a row, or update `update` columns (default: all but `keys`) when it exists."""
    keys = list(keys)
    columns = list(update) if update is not None else [c for c in values if c not in keys]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values)
    if columns:
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={c: statement.excluded[c] for c in columns}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    await conn.execute(statement)


async def insert_ignoring_duplicates(
    conn: AsyncConnection, table: Table, values: Mapping[str, Any], keys: Iterable[str]
) -> bool:
    """Insert unless a row with the same `keys` exists; True when this call inserted it."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    )
    result = await conn.execute(statement)
    return result.rowcount == 1
