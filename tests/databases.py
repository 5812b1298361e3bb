"""Fresh databases for tests: a SQLite file, or a new PostgreSQL database per use.

Set KITH_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test) to run
the suite on PostgreSQL; each database made here is created empty and dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

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


class DatabaseFactory:
    """Hands out empty databases and removes the PostgreSQL ones at the end of a test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.server_url = postgres_url()
        self.created: list[str] = []

    @property
    def is_postgres(self) -> bool:
        return self.server_url is not None

    async def new(self, label: str = "db") -> str:
        """The URL of a new, empty database."""
        if self.server_url is None:
            folder = self.tmp_path / f"{label}-{secrets.token_hex(3)}"
            folder.mkdir(parents=True)
            return f"sqlite+aiosqlite:///{folder / 'kith.db'}"
        name = f"kith_test_{secrets.token_hex(6)}"
        connection = await asyncpg.connect(_admin_dsn(self.server_url), timeout=10)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        if not self.created or self.server_url is None:
            return
        connection = await asyncpg.connect(_admin_dsn(self.server_url), timeout=10)
        try:
            for name in self.created:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
        self.created.clear()
