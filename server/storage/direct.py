"""Hot statements run directly on SQLite, past SQLAlchemy's execution machinery.

A prebuilt statement costs 55–70 µs through SQLAlchemy's async engine (greenlet hand-over,
execution context, cursor result) where SQLite answers it in 2–4 µs; a settlement runs about
twenty of them on each node (performance.md G9). A statement marked with the execution
option `kith_direct=True` is compiled once per set of parameter names into SQL, its bind
processors and its result processors, and then run on the connection's sqlite3 handle inside
the transaction SQLAlchemy already began. The result offers what the marked call sites use
(`rowcount`, and rows by name through SQLAlchemy's own `Result` API).

Only a statement that needs nothing more of the execution context is run this way: no
expanding IN lists, no Python-side column defaults, no RETURNING, one set of parameters, in a
transaction. Anything else, and any statement on PostgreSQL, goes the usual way. A statement
SQLite refuses changed nothing (SQLite undoes a failed statement), so it is run again the
usual way to raise SQLAlchemy's own error (so is one whose parameters cannot be bound).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase

OPTION = "kith_direct"
_NO_ROWS = SimpleResultMetaData([])


class DirectResult(IteratorResult):  # type: ignore[type-arg]
    """Rows already fetched, and how many rows the statement changed."""

    def __init__(self, metadata: SimpleResultMetaData, rows: list[Any], rowcount: int) -> None:
        super().__init__(metadata, iter(rows))
        self.rowcount = rowcount


@dataclass(frozen=True)
class _Plan:
    statement: ClauseElement  # held so that its id() in the cache key stays its own
    sql: str
    names: tuple[str, ...]  # the positional parameters, in order
    fixed: Mapping[str, Any]  # values the statement carries itself (literal binds)
    bind: Mapping[str, Callable[[Any], Any]]
    metadata: SimpleResultMetaData | None  # None: no rows
    columns: tuple[Callable[[Any], Any] | None, ...]

    def run(self, raw: sqlite3.Connection, parameters: Mapping[str, Any]) -> DirectResult:
        values = []
        for name in self.names:
            value = parameters[name] if name in parameters else self.fixed[name]
            process = self.bind.get(name)
            values.append(value if process is None else process(value))
        cursor = raw.execute(self.sql, values)
        if self.metadata is None:
            return DirectResult(_NO_ROWS, [], cursor.rowcount)
        rows = cursor.fetchall()
        if any(self.columns):
            rows = [
                tuple(
                    value if process is None else process(value)
                    for process, value in zip(self.columns, row, strict=True)
                )
                for row in rows
            ]
        return DirectResult(self.metadata, rows, -1)


# (id of the statement, its parameter names) -> plan, or None when it must go the usual way.
# Marked statements are built once (module constants); the bound only guards against one
# built per call, which would otherwise grow this without end.
_plans: dict[tuple[int, frozenset[str]], _Plan | None] = {}
_PLANS_MAX = 1000


def _plan(
    statement: ClauseElement, parameters: Mapping[str, Any], dialect: Dialect
) -> _Plan | None:
    names = frozenset(parameters)
    key = (id(statement), names)
    if key in _plans:
        return _plans[key]
    if len(_plans) >= _PLANS_MAX:
        return None
    plan = _compile(statement, parameters, dialect)
    _plans[key] = plan
    return plan


def _compile(
    statement: ClauseElement, parameters: Mapping[str, Any], dialect: Dialect
) -> _Plan | None:
    column_keys = sorted(parameters) if isinstance(statement, UpdateBase) else None
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    plain = (
        compiled.positiontup is not None
        and not compiled.post_compile_params
        and not compiled.literal_execute_params
        and not getattr(compiled, "insert_prefetch", ())
        and not getattr(compiled, "update_prefetch", ())
        and not getattr(compiled, "effective_returning", None)
        and not any(bind.callable is not None for bind in compiled.binds.values())
    )
    if not plain:
        return None
    everything = compiled.construct_params(dict(parameters))
    fixed = {name: value for name, value in everything.items() if name not in parameters}
    if compiled._result_columns:
        entries = compiled._result_columns
        metadata = SimpleResultMetaData([entry.keyname for entry in entries])
        columns = tuple(entry.type._cached_result_processor(dialect, None) for entry in entries)
    else:
        metadata, columns = None, ()
    return _Plan(
        statement,
        compiled.string,
        tuple(compiled.positiontup),
        fixed,
        dict(compiled._bind_processors),
        metadata,
        columns,
    )


class DirectConnection(AsyncConnection):
    """An async connection that runs statements marked `kith_direct` on sqlite3 itself."""

    __slots__ = ()

    async def execute(  # type: ignore[override]
        self,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> Any:
        plan = None
        if (
            execution_options is None
            and isinstance(parameters, dict | None)
            and getattr(statement, "_execution_options", {}).get(OPTION)
            and self.sync_connection is not None
            and self.sync_connection.in_transaction()
        ):
            plan = _plan(statement, parameters or {}, self.sync_engine.dialect)
        if plan is not None:
            raw = self.sync_connection._dbapi_connection.dbapi_connection._connection._conn
            # What fails here changed nothing (a parameter it could not bind, a statement
            # SQLite refused and undid): the usual way runs it and raises SQLAlchemy's error.
            with contextlib.suppress(Exception):
                return plan.run(raw, parameters or {})
        return await super().execute(statement, parameters, execution_options=execution_options)


class DirectEngine(AsyncEngine):
    """The SQLite engine: its connections are `DirectConnection`s."""

    __slots__ = ()
    _connection_cls = DirectConnection

    def execution_options(self, **options: Any) -> DirectEngine:
        return DirectEngine(self.sync_engine.execution_options(**options))
