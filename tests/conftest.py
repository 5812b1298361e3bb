"""Fixtures shared by every suite: fresh databases and real running nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.databases import (
    DatabaseFactory,
    check_postgres,
    drop_migrated_template,
    postgres_url,
)
from tests.harness import Node, NodeFactory


def pytest_report_header(config: pytest.Config) -> str:
    url = postgres_url()
    return f"kith database: {'PostgreSQL ' + url if url else 'SQLite'}"


def pytest_sessionstart(session: pytest.Session) -> None:
    url = postgres_url()
    if url is None:
        return
    try:
        asyncio.run(check_postgres(url))
    except Exception as exc:  # any failure to connect must stop the run, not skip tests
        pytest.exit(f"KITH_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {exc}", 3)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    asyncio.run(drop_migrated_template())


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path)
    yield factory
    await factory.drop_all()


@pytest.fixture
async def nodes(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[NodeFactory]:
    factory = NodeFactory(tmp_path, databases)
    yield factory
    await factory.close()


@pytest.fixture
async def node(nodes: NodeFactory) -> Node:
    return await nodes.start()
