"""Fresh databases for tests: a SQLite file, or a new PostgreSQL database per use.

Set KITH_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test) to run
the suite on PostgreSQL; each database made here is created empty and dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from server.config import DatabaseConfig
from server.storage.engine import create_database
from server.storage.schema import upgrade

POSTGRES_URL_ENV = "KITH_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    """The PostgreSQL server to test against, or None to test on SQLite."""
    return os.environ.get(POSTGRES_URL_ENV) or None


def _admin_dsn(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


async def check_postgres(url: str) -> None:
    """Fail loudly (not skip) when the configured PostgreSQL cannot be reached."""
    connection = await asyncpg.connect(_admin_dsn(url), timeout=10)
    await connection.close()


class _Migrated:
    """One database migrated to head per test run, copied for every node that needs one:
    migrating a fresh database costs more than most tests (the migration path itself is
    tested in tests/integration/test_migrations.py, on empty databases)."""

    sqlite_file: Path | None = None
    postgres_name: str | None = None

    @classmethod
    async def sqlite(cls) -> Path:
        if cls.sqlite_file is None:
            path = Path(tempfile.mkdtemp(prefix="kith-template-")) / "kith.db"
            await _migrate(f"sqlite+aiosqlite:///{path}")
            cls.sqlite_file = path
        return cls.sqlite_file

    @classmethod
    async def postgres(cls, server_url: str) -> str:
        if cls.postgres_name is None:
            name = f"kith_template_{secrets.token_hex(6)}"
            await _admin(server_url, f'CREATE DATABASE "{name}"')
            await _migrate(_url_of(server_url, name))
            cls.postgres_name = name
        return cls.postgres_name


async def _migrate(url: str) -> None:
    db = create_database(url, DatabaseConfig())
    try:
        await upgrade(db)
    finally:
        await db.dispose()


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(_admin_dsn(server_url), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _url_of(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_migrated_template() -> None:
    """At the end of the run: remove the template (PostgreSQL) or its folder (SQLite)."""
    if _Migrated.sqlite_file is not None:
        shutil.rmtree(_Migrated.sqlite_file.parent, ignore_errors=True)
    url = postgres_url()
    if _Migrated.postgres_name is not None and url is not None:
        await _admin(url, f'DROP DATABASE IF EXISTS "{_Migrated.postgres_name}" WITH (FORCE)')


class DatabaseFactory:
    """Hands out empty databases and removes the PostgreSQL ones at the end of a test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.server_url = postgres_url()
        self.created: list[str] = []

    @property
    def is_postgres(self) -> bool:
        return self.server_url is not None

    async def new(self, label: str = "db", migrated: bool = False) -> str:
        """The URL of a new database: empty, or already migrated to head."""
        if self.server_url is None:
            folder = self.tmp_path / f"{label}-{secrets.token_hex(3)}"
            folder.mkdir(parents=True)
            if migrated:
                shutil.copyfile(await _Migrated.sqlite(), folder / "kith.db")
            return f"sqlite+aiosqlite:///{folder / 'kith.db'}"
        name = f"kith_test_{secrets.token_hex(6)}"
        template = f' TEMPLATE "{await _Migrated.postgres(self.server_url)}"' if migrated else ""
        await _admin(self.server_url, f'CREATE DATABASE "{name}"{template}')
        self.created.append(name)
        return _url_of(self.server_url, name)

    async def drop_all(self) -> None:
        if not self.created or self.server_url is None:
            return
        for name in self.created:
            await _admin(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()
