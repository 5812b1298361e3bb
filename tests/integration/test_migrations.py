"""The schema: migrations from empty on both databases, and refusals of unusable schemas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, text

from server.config import load_config
from server.identity.accounts import create_account, list_accounts
from server.identity.keys import generate_actor_keys
from server.node import open_database
from server.storage.engine import create_database
from server.storage.schema import SchemaError, check_usable, schema_state, target_metadata, upgrade
from tests.databases import DatabaseFactory

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def _config(url: str, tmp_path):
    return load_config(None, environ={}, overrides={"database.url": url}, cwd=tmp_path)


def _schema_differences(connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    combined = MetaData()
    for metadata in target_metadata():
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return compare_metadata(context, combined)


async def test_migrations_run_from_empty_and_match_the_table_definitions(
    databases: DatabaseFactory, tmp_path
) -> None:
    config = _config(await databases.new(), tmp_path)
    db = create_database(config.database.url, config.database)
    try:
        before = await schema_state(db)
        assert before.is_empty
        assert before.current is None
        assert before.pending
        after = await upgrade(db)
        assert after.is_current
        assert not after.pending
        check_usable(after)
        async with db.read() as conn:
            assert await conn.run_sync(_schema_differences) == []
    finally:
        await db.dispose()


async def test_upgrade_twice_changes_nothing_and_keeps_data(
    databases: DatabaseFactory, tmp_path
) -> None:
    config = _config(await databases.new(), tmp_path)
    db = await open_database(config, initialize_empty=True)
    try:
        keys = generate_actor_keys()
        async with db.transaction() as conn:
            await create_account(conn, "alice", keys, NOW)
        state = await upgrade(db)
        assert state.is_current
        async with db.read() as conn:
            assert [a.username for a in await list_accounts(conn)] == ["alice"]
    finally:
        await db.dispose()


async def test_a_newer_schema_is_refused_with_a_clear_message(
    databases: DatabaseFactory, tmp_path
) -> None:
    config = _config(await databases.new(), tmp_path)
    db = await open_database(config, initialize_empty=True)
    async with db.transaction() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    await db.dispose()
    with pytest.raises(SchemaError, match="newer release"):
        await open_database(config, initialize_empty=True)
    db = create_database(config.database.url, config.database)
    try:
        with pytest.raises(SchemaError, match="newer release"):
            await upgrade(db)
    finally:
        await db.dispose()


async def test_an_unmigrated_database_is_refused_unless_initialising(
    databases: DatabaseFactory, tmp_path
) -> None:
    config = _config(await databases.new(), tmp_path)
    with pytest.raises(SchemaError, match="kith db upgrade"):
        await open_database(config, initialize_empty=False)


async def test_a_database_of_another_program_is_refused(
    databases: DatabaseFactory, tmp_path
) -> None:
    config = _config(await databases.new(), tmp_path)
    db = create_database(config.database.url, config.database)
    try:
        async with db.transaction() as conn:
            await conn.execute(text("CREATE TABLE somebody_elses (id INTEGER PRIMARY KEY)"))
        with pytest.raises(SchemaError, match="not a Kith database"):
            await upgrade(db)
    finally:
        await db.dispose()
    with pytest.raises(SchemaError, match="not a Kith database"):
        await open_database(config, initialize_empty=True)


async def test_sqlite_runs_in_wal_with_foreign_keys_and_full_sync(tmp_path) -> None:
    config = _config(f"sqlite+aiosqlite:///{tmp_path / 'kith.db'}", tmp_path)
    db = create_database(config.database.url, config.database)
    try:
        async with db.read() as conn:
            pragmas = {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            }
    finally:
        await db.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 2,  # FULL
        "busy_timeout": config.database.busy_timeout_ms,
    }


async def test_concurrent_writers_wait_for_each_other_instead_of_failing(
    databases: DatabaseFactory, tmp_path
) -> None:
    config = _config(await databases.new(), tmp_path)
    db = await open_database(config, initialize_empty=True)
    keys = generate_actor_keys()

    async def register(name: str) -> None:
        async with db.transaction() as conn:
            await list_accounts(conn)  # a read first: the classic lock-upgrade deadlock
            await asyncio.sleep(0.01)
            await create_account(conn, name, keys, NOW)

    try:
        await asyncio.gather(*(register(f"user{i}") for i in range(8)))
        async with db.read() as conn:
            assert len(await list_accounts(conn)) == 8
    finally:
        await db.dispose()


async def test_a_database_populated_at_the_first_revision_upgrades_with_its_data(
    databases: DatabaseFactory, tmp_path
) -> None:
    config = _config(await databases.new(), tmp_path)
    db = create_database(config.database.url, config.database)
    try:
        await upgrade(db, target="0001")
        async with db.transaction() as conn:
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, username, username_key, actor_type, "
                    "is_instance_actor, display_name, note, is_locked, is_discoverable, "
                    "is_indexable, is_admin, created_at) VALUES (1, 'Alice', 'alice', 'Person', "
                    "false, 'Alice', '', false, true, false, false, :now)"
                ),
                {"now": NOW},
            )
        state = await upgrade(db)
        assert state.is_current
        async with db.read() as conn:
            (alice,) = await list_accounts(conn)
        assert (alice.username, alice.domain, alice.is_local) == ("Alice", "", True)
    finally:
        await db.dispose()
