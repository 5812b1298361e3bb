"""The operator's CLI, run in-process against a real database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import stat
import tomllib
from pathlib import Path

import pytest

from server.cli import build_parser, main
from server.config import load_config
from server.node import open_database
from tests.databases import DatabaseFactory
from tests.harness import NodeFactory
from tests.integration.conftest import Cli


def test_help_documents_every_command(cli: Cli) -> None:
    parser = build_parser()
    text = parser.format_help()
    for command in ("init", "serve", "db", "user", "token", "config"):
        assert command in text
    for argv in (
        ["serve", "--help"],
        ["init", "--help"],
        ["db", "upgrade", "--help"],
        ["db", "status", "--help"],
        ["user", "create", "--help"],
        ["user", "list", "--help"],
        ["user", "show", "--help"],
        ["token", "create", "--help"],
        ["config", "check", "--help"],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0


def test_init_writes_a_private_commented_config_and_prepares_the_database(cli: Cli) -> None:
    result = cli("init", "--data-dir", "site", "--domain", "social.example")
    assert result.code == 0, result.err
    config_path = cli.cwd / "site" / "config.toml"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    text = config_path.read_text()
    assert text.startswith("# Kith node configuration.")
    assert tomllib.loads(text)["instance"]["domain"] == "social.example"
    config = load_config(config_path, environ={"KITH_DATABASE__URL": cli.database_url})
    assert config.base_url == "https://social.example"
    assert config.data_dir == (cli.cwd / "site").resolve()
    status = cli("db", "status", "--config", str(config_path))
    assert status.code == 0
    assert "up to date" in status.out


def test_init_refuses_to_overwrite_without_force(cli: Cli) -> None:
    assert cli("init", "--data-dir", "site").code == 0
    again = cli("init", "--data-dir", "site", "--domain", "other.example")
    assert again.code == 1
    assert "--force" in again.err
    forced = cli("init", "--data-dir", "site", "--domain", "other.example", "--force")
    assert forced.code == 0
    text = (cli.cwd / "site" / "config.toml").read_text()
    assert tomllib.loads(text)["instance"]["domain"] == "other.example"


def test_init_with_a_bad_value_names_the_key_and_writes_nothing(cli: Cli) -> None:
    result = cli("init", "--data-dir", "site", "--domain", "https://social.example/")
    assert result.code == 1
    assert "instance.domain" in result.err
    assert not (cli.cwd / "site" / "config.toml").exists()


def test_user_create_list_show(cli: Cli) -> None:
    created = cli(
        "user",
        "create",
        "alice",
        "--password-stdin",
        "--display-name",
        "Alice",
        "--admin",
        stdin="correct horse battery\n",
    )
    assert created.code == 0, created.err
    assert "@alice@localhost:8080" in created.out
    assert "correct horse" not in created.out + created.err
    listed = cli("user", "list")
    assert listed.code == 0
    assert "alice" in listed.out
    shown = cli("user", "show", "ALICE")
    assert shown.code == 0
    assert "http://localhost:8080/users/alice" in shown.out
    assert "z6Mk" in shown.out  # the Ed25519 multikey
    assert "PRIVATE" not in shown.out


def test_user_create_without_a_password_prints_a_generated_one(cli: Cli) -> None:
    created = cli("user", "create", "bob")
    assert created.code == 0
    assert "password: " in created.out


@pytest.mark.parametrize(
    ("argv", "stdin", "reason"),
    [
        (["user", "create", "bad-name"], "", "letters a-z"),
        (["user", "create", "x" * 31], "", "at most 30"),
        (["user", "create", "carol", "--password-stdin"], "short\n", "at least 8"),
        (["user", "show", "nobody"], "", "no account"),
        (["token", "create", "nobody"], "", "no account"),
    ],
)
def test_user_and_token_errors_exit_1_with_a_reason(
    cli: Cli, argv: list[str], stdin: str, reason: str
) -> None:
    result = cli(*argv, stdin=stdin)
    assert result.code == 1
    assert result.err.startswith("kith: error:")
    assert reason in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_usernames_are_unique_ignoring_case(cli: Cli) -> None:
    assert cli("user", "create", "alice").code == 0
    again = cli("user", "create", "Alice")
    assert again.code == 1
    assert "taken" in again.err


def test_token_with_an_unknown_scope_is_refused(cli: Cli) -> None:
    assert cli("user", "create", "alice").code == 0
    result = cli("token", "create", "alice", "--scopes", "read bogus")
    assert result.code == 1
    assert "bogus" in result.err


async def test_token_create_prints_a_token_the_node_accepts(cli: Cli, nodes: NodeFactory) -> None:
    await asyncio.to_thread(cli, "user", "create", "alice")
    result = await asyncio.to_thread(cli, "token", "create", "alice", "--scopes", "read")
    assert result.code == 0
    token = result.out.strip()
    node = await nodes.start(database_url=cli.database_url)
    headers = {"Authorization": f"Bearer {token}"}
    async with node.http.get("/api/v1/accounts/verify_credentials", headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["username"] == "alice"


def test_db_status_without_a_database_says_how_to_make_one(cli: Cli) -> None:
    result = cli("db", "status", env={"KITH_DATABASE__URL": ""})
    assert result.code == 1
    assert "kith init" in result.err


def test_db_upgrade_migrates_then_reports_up_to_date(cli: Cli) -> None:
    first = cli("db", "upgrade")
    assert first.code == 0
    assert "migrating: 0001" in first.out
    second = cli("db", "upgrade")
    assert second.code == 0
    assert "up to date" in second.out


async def test_db_status_reports_pending_migrations_on_an_empty_database(
    cli: Cli, databases: DatabaseFactory
) -> None:
    if not databases.is_postgres:  # an empty SQLite database is a file that exists
        Path(cli.database_url.removeprefix("sqlite+aiosqlite:///")).touch()
    result = await asyncio.to_thread(cli, "db", "status")
    assert result.code == 0
    assert "pending" in result.out
    assert "0001" in result.out


def test_serve_refuses_a_newer_schema(cli: Cli) -> None:
    assert cli("db", "upgrade").code == 0

    async def from_the_future() -> None:
        config = load_config(None, environ={"KITH_DATABASE__URL": cli.database_url}, cwd=cli.cwd)
        db = await open_database(config, initialize_empty=False)
        from sqlalchemy import text

        async with db.transaction() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'zzzz'"))
        await db.dispose()

    asyncio.run(from_the_future())
    served = cli("serve", "--port", "0")
    assert served.code == 1
    assert "newer release" in served.err
    status = cli("db", "status")
    assert status.code == 1
    assert "newer" in status.out


def test_config_errors_name_the_key_and_the_variable(cli: Cli) -> None:
    result = cli("config", "check", env={"KITH_SERVER__PORT": "eighty"})
    assert result.code == 1
    assert "server.port" in result.err
    assert "KITH_SERVER__PORT" in result.err
    unknown = cli("config", "check", env={"KITH_SERVER__PROT": "80"})
    assert unknown.code == 1
    assert "KITH_SERVER__PROT" in unknown.err


def test_config_check_hides_the_database_password(cli: Cli) -> None:
    url = "postgresql+asyncpg://kith:s3cret@db.example/kith"
    result = cli("config", "check", env={"KITH_DATABASE__URL": url})
    assert result.code == 0
    assert "s3cret" not in result.out
    assert "***" in result.out
