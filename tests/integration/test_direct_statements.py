"""Statements marked `kith_direct` run on sqlite3 itself (server/storage/direct.py) and give
what SQLAlchemy's usual path gives: the same rows and types, the same row counts, the same
errors, and nothing changed by a statement SQLite refuses. (SQLite only: on PostgreSQL the
option means nothing.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError, StatementError

from server.config import DatabaseConfig
from server.storage import direct
from server.storage.engine import Database, create_database
from server.storage.types import UTCDateTime

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", String(40), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("seen_at", UTCDateTime, nullable=True),
    Column("note", Text, nullable=True),
)
DIRECT = {"kith_direct": True}
BY_NAME = select(things).where(things.c.name == bindparam("name"))
ACTIVE = select(things.c.id).where(things.c.active.is_(True)).order_by(things.c.id)
RENAME = update(things).where(things.c.id == bindparam("thing")).values(name=bindparam("new"))
ADD = insert(things)
NOW = datetime(2026, 12, 6, 5, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = create_database(f"sqlite+aiosqlite:///{tmp_path / 'kith.db'}", DatabaseConfig())
    async with database.transaction() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            ADD,
            [
                {"id": 1, "name": "one", "active": True, "seen_at": NOW, "note": None},
                {"id": 2, "name": "two", "active": False, "seen_at": None, "note": "x"},
                {"id": 3, "name": "three", "active": True, "seen_at": NOW, "note": ""},
            ],
        )
    yield database
    await database.dispose()


def _was_planned(statement: object) -> bool:
    return any(key[0] == id(statement) and plan for key, plan in direct._plans.items())


async def test_a_marked_select_returns_the_rows_and_types_of_the_usual_path(db: Database) -> None:
    fast = BY_NAME.execution_options(**DIRECT)
    async with db.transaction() as conn:
        for name in ("one", "two", "three", "none"):
            usual = (await conn.execute(BY_NAME, {"name": name})).all()
            rows = (await conn.execute(fast, {"name": name})).all()
            assert rows == usual
            assert [row._mapping for row in rows] == [row._mapping for row in usual]
        row = (await conn.execute(fast, {"name": "one"})).one()
        assert row.active is True
        assert row.seen_at == NOW
        assert row.seen_at.tzinfo is not None
        assert (await conn.execute(ACTIVE.execution_options(**DIRECT))).scalars().all() == [1, 3]
    assert _was_planned(fast)


async def test_a_marked_update_reports_the_rows_it_changed(db: Database) -> None:
    fast = RENAME.execution_options(**DIRECT)
    async with db.transaction() as conn:
        assert (await conn.execute(fast, {"thing": 2, "new": "deux"})).rowcount == 1
        assert (await conn.execute(fast, {"thing": 99, "new": "nothing"})).rowcount == 0
    async with db.read() as conn:
        names = (await conn.execute(select(things.c.name).order_by(things.c.id))).scalars().all()
    assert names == ["one", "deux", "three"]
    assert _was_planned(fast)


async def test_a_marked_insert_stores_what_the_usual_path_stores(db: Database) -> None:
    fast = ADD.execution_options(**DIRECT)
    row = {"id": 4, "name": "four", "active": False, "seen_at": NOW, "note": None}
    async with db.transaction() as conn:
        assert (await conn.execute(fast, row)).rowcount == 1
        await conn.execute(ADD, {**row, "id": 5, "name": "five"})
    async with db.read() as conn:
        stored = (await conn.execute(select(things).where(things.c.id.in_([4, 5])))).all()
    assert [tuple(r)[2:] for r in stored] == [(False, NOW, None)] * 2


async def test_a_statement_sqlite_refuses_raises_sqlalchemys_error_and_changes_nothing(
    db: Database,
) -> None:
    fast = ADD.execution_options(**DIRECT)
    duplicate = {"id": 1, "name": "again", "active": True, "seen_at": None, "note": None}
    async with db.transaction() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(fast, duplicate)
        # The transaction goes on: the refused statement left nothing behind.
        await conn.execute(RENAME.execution_options(**DIRECT), {"thing": 3, "new": "trois"})
    async with db.read() as conn:
        rows = (await conn.execute(select(things.c.id, things.c.name).order_by(things.c.id))).all()
    assert [tuple(r) for r in rows] == [(1, "one"), (2, "two"), (3, "trois")]


async def test_outside_a_transaction_and_for_what_it_cannot_run_the_usual_path_runs(
    db: Database,
) -> None:
    async with db.engine.connect() as conn:  # nothing began yet: SQLAlchemy begins it
        first = await conn.execute(BY_NAME.execution_options(**DIRECT), {"name": "one"})
        assert isinstance(first, CursorResult)
        expanding = select(things.c.id).where(things.c.id.in_(bindparam("ids", expanding=True)))
        fast = expanding.execution_options(**DIRECT)
        found = await conn.execute(fast, {"ids": [1, 3]})
        assert sorted(found.scalars()) == [1, 3]
        assert not _was_planned(fast)
        many = await conn.execute(
            select(func.count()).select_from(things).execution_options(**DIRECT)
        )
        assert many.scalar_one() == 3


async def test_a_parameter_that_cannot_be_bound_gets_sqlalchemys_error(db: Database) -> None:
    seen = update(things).where(things.c.id == bindparam("thing")).values(seen_at=bindparam("at"))
    fast = seen.execution_options(**DIRECT)
    async with db.transaction() as conn:
        with pytest.raises(StatementError, match="timezone-aware"):
            await conn.execute(fast, {"thing": 1, "at": datetime(2026, 12, 6)})
        assert (await conn.execute(fast, {"thing": 1, "at": NOW})).rowcount == 1
    assert _was_planned(fast)
