"""`kith serve --role`: what the command refuses before it starts anything.

The roles at work (a web and two worker processes on PostgreSQL) are in
tests/federation/test_several_processes.py.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from server.cli import build_parser
from server.config import DatabaseConfig
from server.node import ROLES, RoleError, check_role
from server.storage.engine import create_database
from server.storage.schema import schema_state
from tests.databases import postgres_url
from tests.integration.conftest import Cli

ON_POSTGRESQL = pytest.mark.skipif(
    postgres_url() is None, reason="web and worker processes run on PostgreSQL only"
)


@pytest.mark.parametrize("role", ["web", "worker"])
def test_a_split_on_sqlite_is_refused_saying_to_use_postgresql(cli: Cli, role: str) -> None:
    sqlite = f"sqlite+aiosqlite:///{cli.cwd / 'kith.db'}"
    result = cli("serve", "--role", role, "--port", "0", env={"KITH_DATABASE__URL": sqlite})
    assert result.code == 1
    assert f"--role {role} needs PostgreSQL" in result.err
    assert "one process owns a SQLite database" in result.err
    assert not (cli.cwd / "kith.db").exists()  # refused before opening anything


def test_the_role_check_accepts_every_role_on_postgresql_and_all_on_sqlite() -> None:
    for role in ("all", "web", "worker"):
        check_role(role, "postgresql+asyncpg://kith@db/kith")
    check_role("all", "sqlite+aiosqlite:///kith.db")
    with pytest.raises(RoleError, match="unknown role"):
        check_role("everything", "postgresql+asyncpg://kith@db/kith")


def test_a_health_port_is_for_workers_only(cli: Cli) -> None:
    result = cli("serve", "--health-port", "9100")
    assert result.code == 1
    assert "--health-port is for --role worker" in result.err


def test_serve_help_documents_the_roles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--role {all,web,worker}" in shown
    assert "web and worker need PostgreSQL" in shown
    assert "--health-port PORT" in shown


def test_an_unknown_role_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--role", "everything"])
    assert "invalid choice" in capsys.readouterr().err


def _set_revision(url: str, revision: str) -> None:
    async def run() -> None:
        db = create_database(url, DatabaseConfig())
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    text("UPDATE alembic_version SET version_num = :v"), {"v": revision}
                )
        finally:
            await db.dispose()

    asyncio.run(run())


@pytest.mark.parametrize(
    "role", [pytest.param(r, marks=ON_POSTGRESQL if r != "all" else ()) for r in ROLES]
)
def test_every_role_refuses_a_schema_written_by_a_newer_release(cli: Cli, role: str) -> None:
    assert cli("db", "upgrade").code == 0
    _set_revision(cli.database_url, "9999_from_a_newer_release")
    served = cli("serve", "--role", role, "--port", "0")
    assert served.code == 1
    assert "newer release" in served.err


@ON_POSTGRESQL
@pytest.mark.parametrize("role", ["web", "worker"])
def test_web_and_worker_leave_an_empty_database_to_kith_db_upgrade(cli: Cli, role: str) -> None:
    served = cli("serve", "--role", role, "--port", "0")
    assert served.code == 1
    assert "kith db upgrade" in served.err

    async def state() -> bool:
        db = create_database(cli.database_url, DatabaseConfig())
        try:
            return (await schema_state(db)).is_empty
        finally:
            await db.dispose()

    assert asyncio.run(state())  # not migrated by a process that races its siblings
