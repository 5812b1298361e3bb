"""`kith backup` and `kith restore` on real files and real databases (SQLite, or PostgreSQL
when KITH_TEST_POSTGRES_URL is set and pg_dump is installed)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import signal
import sqlite3
import sys
import tarfile
import time
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from server import backup
from server.cli import main
from server.config import DatabaseConfig, render_example
from server.storage.engine import create_database
from server.storage.schema import upgrade
from tests.api.client import ApiClient, client_for
from tests.databases import DatabaseFactory
from tests.harness import Node, NodeFactory
from tests.integration.conftest import Cli
from tests.integration.support import AS2

KITH = str(Path(sys.executable).parent / "kith")
PASSWORD = "correct horse battery\n"


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITH_")}
    env.update(extra)
    return env


async def _kith(*argv: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The real `kith` program in its own process, as an operator runs it."""
    process = await asyncio.create_subprocess_exec(
        KITH, *argv, cwd=cwd, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _require_postgres_tools() -> None:
    for tool in ("pg_dump", "pg_restore"):
        if backup.find_tool(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install postgresql-client)")


def _write_config(node: Node, data_dir: Path, database_url: str) -> Path:
    """The config file an operator would run this node with."""
    path = data_dir / "config.toml"
    path.write_text(
        render_example(
            {
                "instance.domain": node.domain,
                "instance.base_url": node.base_url,
                "server.port": node.config.server.port,
                "storage.data_dir": str(data_dir),
                "database.url": database_url,
                "federation.allow_private_addresses": True,
            }
        )
    )
    return path


async def _get(http: aiohttp.ClientSession, url: str, token: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(url, headers=headers, params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _statuses(http: aiohttp.ClientSession, base_url: str, token: str) -> list[tuple]:
    """Every status of the token's account, newest first, page by page."""
    me = await _get(http, f"{base_url}/api/v1/accounts/verify_credentials", token)
    url = f"{base_url}/api/v1/accounts/{me['id']}/statuses"
    found: list[tuple] = []
    params: dict[str, Any] = {"limit": 40}
    while page := await _get(http, url, token, **params):
        found += [(s["id"], s["content"], s["created_at"]) for s in page]
        params["max_id"] = page[-1]["id"]
    return found


async def _observe(base_url: str, http: aiohttp.ClientSession, tokens: dict[str, str]) -> dict:
    """What a node serves: actor documents (with their keys), statuses, balances."""
    seen: dict[str, Any] = {}
    for path in ("/actor", "/users/alice", "/users/carol"):
        async with http.get(base_url + path, headers=AS2) as response:
            assert response.status == 200
            seen[path] = await response.json(content_type=None)
    for name, token in tokens.items():
        seen[f"{name} statuses"] = await _statuses(http, base_url, token)
        wallet = await _get(http, f"{base_url}/api/kith/v1/wallet", token)
        euros = [b["balance"] for b in wallet["balances"] if b["currency"] == "EUR"]
        seen[f"{name} balance"] = euros[0] if euros else "0.00"
    return seen


async def _serve(config: Path, env: dict[str, str], cwd: Path, base_url: str) -> Any:
    """`kith serve` in its own process, once it answers /healthz."""
    process = await asyncio.create_subprocess_exec(
        KITH, "serve", "--config", str(config), cwd=cwd, env=env, stdout=PIPE, stderr=PIPE
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                _, err = await process.communicate()
                pytest.fail(f"kith serve exited with {process.returncode}: {err.decode()}")
            try:
                async with http.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    process.kill()
    pytest.fail("the restored node did not become healthy")


async def _writer(alice: ApiClient, ticks: list[str], stop: asyncio.Event) -> None:
    """Posts and payments, one after the other, until told to stop."""
    while not stop.is_set():
        posted = await alice.post("/api/v1/statuses", status=f"tick {len(ticks)}")
        assert posted.status == 200, posted.body
        paid = await alice.post("/api/kith/v1/transfers", to="carol", amount="0.01", currency="EUR")
        assert paid.body["state"] == "completed", paid.body
        ticks.append(posted.body["id"])
        await asyncio.sleep(0.02)


async def _live_node(
    nodes: NodeFactory, databases: DatabaseFactory, tmp_path: Path
) -> tuple[Node, Path, dict[str, str]]:
    """A running node with its config file, and the environment a restore of it runs in (on
    PostgreSQL: an empty database of its own)."""
    restore_env: dict[str, str] = {}
    live_url = await databases.new("live", migrated=True)
    if databases.is_postgres:
        _require_postgres_tools()
        live_dir = tmp_path / "live"
        restore_env["KITH_DATABASE__URL"] = await databases.new("restored")
    else:
        live_dir = Path(make_url(live_url).database or "").parent  # kith.db in the data dir
    node = await nodes.start(database_url=live_url, storage__data_dir=str(live_dir))
    config = _write_config(node, live_dir, live_url if databases.is_postgres else "")
    (live_dir / "media").mkdir(parents=True)
    (live_dir / "media" / "banner.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return node, config, _environment(**restore_env)


async def _populate(node: Node, config: Path) -> tuple[ApiClient, dict[str, str]]:
    """Two users with posts; a deposit by `kith wallet deposit` and a payment between them."""
    alice, carol = await client_for(node, "alice"), await client_for(node, "carol")
    for text in ("first post", "second post", "third post"):
        assert (await alice.post("/api/v1/statuses", status=text)).status == 200
    assert (await carol.post("/api/v1/statuses", status="carol was here")).status == 200
    code, _, err = await _kith(
        "wallet", "deposit", "alice", "100.00", "EUR", "--reference", "bank-1",
        "--config", str(config), env=_environment(), cwd=config.parent,
    )  # fmt: skip
    assert code == 0, err
    paid = await alice.post("/api/kith/v1/transfers", to="carol", amount="12.34", currency="EUR")
    assert paid.body["state"] == "completed", paid.body
    return alice, {"alice": alice.token or "", "carol": carol.token or ""}


async def _backup_while_writing(
    alice: ApiClient, config: Path, archive: Path
) -> tuple[list[str], int, float]:
    """`kith backup` in its own process while alice keeps posting and paying: the ids of her
    posts in order, how many were made while the backup ran, and how long it took."""
    ticks: list[str] = []
    stop = asyncio.Event()
    writing = asyncio.create_task(_writer(alice, ticks, stop))
    await asyncio.sleep(0.2)
    at_start, started = len(ticks), time.monotonic()
    code, out, err = await _kith(
        "backup", str(archive), "--config", str(config), env=_environment(), cwd=archive.parent
    )
    seconds, during = time.monotonic() - started, len(ticks) - at_start
    stop.set()
    await writing
    assert code == 0, err
    assert "backup written to" in out
    assert during > 0, "the node must have kept writing during the backup"
    assert archive.stat().st_mode & 0o077 == 0
    return ticks, during, seconds


def _assert_one_moment(before: dict, after: dict, written: list[str]) -> None:
    """The restored node shows everything from before the backup, then the first k of the
    posts made during it, in order, and the payments that went with them: one moment."""
    for path in ("/actor", "/users/alice", "/users/carol"):
        assert after[path] == before[path]  # the same ids and public keys
    assert after["carol statuses"] == before["carol statuses"]
    restored_ticks = [s[0] for s in after["alice statuses"] if s[1].startswith("<p>tick ")]
    k = len(restored_ticks)
    assert list(reversed(restored_ticks)) == written[:k]
    untouched = [s for s in after["alice statuses"] if not s[1].startswith("<p>tick ")]
    assert untouched == before["alice statuses"]
    cents = round(float(after["carol balance"]) * 100) - round(float(before["carol balance"]) * 100)
    assert cents in (k, k - 1)  # the moment may fall between a post and its payment
    assert float(after["alice balance"]) + float(after["carol balance"]) == pytest.approx(100.0)


@pytest.mark.slow
async def test_a_backup_taken_while_the_node_serves_restores_the_same_actors_posts_and_balances(
    nodes: NodeFactory, databases: DatabaseFactory, tmp_path: Path
) -> None:
    node, config, restore_env = await _live_node(nodes, databases, tmp_path)
    alice, tokens = await _populate(node, config)
    before = await _observe(node.base_url, node.http, tokens)
    assert before["alice balance"] == "87.66"
    archive = tmp_path / "kith-backup.tar.gz"
    written, during, backup_seconds = await _backup_while_writing(alice, config, archive)
    await nodes.stop(node)

    restored_dir = tmp_path / "restored"
    started = time.monotonic()
    code, out, err = await _kith(
        "restore", str(archive), "--data-dir", str(restored_dir), env=restore_env, cwd=tmp_path
    )
    restore_seconds = time.monotonic() - started
    assert code == 0, err
    restored_config = restored_dir / "config.toml"
    assert f"kith serve --config {restored_config}" in out
    assert (restored_dir / "media" / "banner.png").read_bytes().startswith(b"\x89PNG")
    print(
        f"\nbackup {backup_seconds:.2f} s, restore {restore_seconds:.2f} s, archive "
        f"{archive.stat().st_size} bytes, {during} writes during the backup"
    )
    server = await _serve(restored_config, restore_env, tmp_path, node.base_url)
    try:
        async with aiohttp.ClientSession() as http:
            after = await _observe(node.base_url, http, tokens)
        code, out, err = await _kith(
            "payments", "audit", "--config", str(restored_config), env=restore_env, cwd=tmp_path
        )
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.communicate(), 30)
    assert code == 0, out + err
    assert "consistent" in out
    _assert_one_moment(before, after, written)


def _create_user(cli: Cli, name: str) -> None:
    assert cli("user", "create", name, "--password-stdin", stdin=PASSWORD).code == 0


def _sqlite_env(cli: Cli, data_dir: Path) -> dict[str, str]:
    """A SQLite node in `data_dir` (the cli fixture would otherwise use its own database)."""
    return {"KITH_DATABASE__URL": "", "KITH_STORAGE__DATA_DIR": str(data_dir)}


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _backed_up_node(cli: Cli) -> tuple[Path, dict[str, str]]:
    """A small SQLite node with a user and money, and its backup."""
    env = _sqlite_env(cli, cli.cwd / "live")
    assert cli("user", "create", "alice", "--password-stdin", stdin=PASSWORD, env=env).code == 0
    assert cli("wallet", "deposit", "alice", "5", "EUR", env=env).code == 0
    archive = cli.cwd / "backup.tar.gz"
    made = cli("backup", str(archive), env=env)
    assert made.code == 0, made.err
    return archive, env


def _rewritten(archive: Path, target: Path, change: Any) -> None:
    """A copy of the archive whose manifest `change` edits (a well-formed archive otherwise)."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(target, "w:gz") as copy:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == backup.MANIFEST:
                document = json.loads(data)
                change(document)
                data = json.dumps(document).encode()
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))


def test_backup_and_restore_on_sqlite_keep_the_node_and_refuse_to_overwrite(cli: Cli) -> None:
    archive, env = _backed_up_node(cli)
    again = cli("backup", str(archive), env=env)
    assert again.code == 1
    assert "never overwrites" in again.err
    manifest = backup.read_manifest(archive)
    assert manifest.database == "sqlite"
    assert [e.path for e in manifest.files] == [backup.SQLITE_MEMBER]
    restored_dir = cli.cwd / "restored"
    restored = cli("restore", str(archive), env=_sqlite_env(cli, restored_dir))
    assert restored.code == 0, restored.err
    assert "1 local account(s)" in restored.out
    restored_env = _sqlite_env(cli, restored_dir)
    assert "5.00" in cli("wallet", "balance", "alice", env=restored_env).out
    assert cli("payments", "audit", env=restored_env).code == 0
    original = cli("user", "show", "alice", env=env).out
    assert cli("user", "show", "alice", env=restored_env).out == original  # same keys


def test_a_corrupt_or_truncated_archive_is_refused_and_nothing_is_written(cli: Cli) -> None:
    archive, _ = _backed_up_node(cli)
    data = archive.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    damaged = {
        "truncated.tar.gz": data[: len(data) // 2],
        "no-trailer.tar.gz": data[:-4],
        "flipped.tar.gz": bytes(flipped),
        "not-an-archive.tar.gz": b"hello",
    }
    for name, content in damaged.items():
        (cli.cwd / name).write_bytes(content)
        target = cli.cwd / f"into-{name}"
        result = cli("restore", str(cli.cwd / name), env=_sqlite_env(cli, target))
        assert result.code == 1, name
        assert "corrupt or truncated" in result.err, (name, result.err)
        assert not target.exists(), name
    # A member whose bytes differ from the manifest's checksum, in an otherwise sound archive.
    lying = cli.cwd / "lying.tar.gz"

    def wrong_sum(document: dict) -> None:
        document["files"][0]["sha256"] = "0" * 64

    _rewritten(archive, lying, wrong_sum)
    result = cli("restore", str(lying), env=_sqlite_env(cli, cli.cwd / "into-lying"))
    assert result.code == 1
    assert "does not match its checksum" in result.err
    assert not (cli.cwd / "into-lying").exists()


def test_restore_refuses_a_data_dir_that_already_holds_a_database(cli: Cli) -> None:
    archive, env = _backed_up_node(cli)
    live = cli.cwd / "live"
    before = _tree(live)
    refused = cli("restore", str(archive), env=env)
    assert refused.code == 1
    assert "is not empty" in refused.err
    assert "kith.db" in refused.err
    assert _tree(live) == before
    # A stray journal is a database too: restoring next to it would corrupt the restored file.
    stray = cli.cwd / "stray"
    stray.mkdir()
    (stray / "kith.db-wal").write_bytes(b"old")
    refused = cli("restore", str(archive), env=_sqlite_env(cli, stray))
    assert refused.code == 1
    assert "kith.db-wal" in refused.err
    assert sorted(p.name for p in stray.iterdir()) == ["kith.db-wal"]


def test_an_archive_from_a_newer_schema_is_refused(cli: Cli) -> None:
    archive, _ = _backed_up_node(cli)
    newer = cli.cwd / "newer.tar.gz"

    def from_the_future(document: dict) -> None:
        document["schema_revision"] = "9999_from_a_newer_release"
        document["kith_version"] = "9.0.0"

    _rewritten(archive, newer, from_the_future)
    target = cli.cwd / "into-newer"
    refused = cli("restore", str(newer), env=_sqlite_env(cli, target))
    assert refused.code == 1
    assert "newer than this Kith" in refused.err
    assert "Kith 9.0.0 or newer" in refused.err
    assert not target.exists()


async def test_an_older_schema_is_restored_and_kith_db_upgrade_migrates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    db = create_database(f"sqlite+aiosqlite:///{old / 'kith.db'}", DatabaseConfig())
    try:
        await upgrade(db, target="0011")
    finally:
        await db.dispose()
    env = _environment(KITH_STORAGE__DATA_DIR=str(old))
    archive = tmp_path / "old.tar.gz"
    code, _, err = await _kith("backup", str(archive), env=env, cwd=tmp_path)
    assert code == 0, err
    assert backup.read_manifest(archive).schema_revision == "0011"
    new_env = _environment(KITH_STORAGE__DATA_DIR=str(tmp_path / "new"))
    code, out, err = await _kith("restore", str(archive), env=new_env, cwd=tmp_path)
    assert code == 0, err
    assert "kith db upgrade" in out
    code, out, err = await _kith("db", "upgrade", env=new_env, cwd=tmp_path)
    assert code == 0, err
    code, out, _ = await _kith("db", "status", env=new_env, cwd=tmp_path)
    assert "up to date" in out


def test_the_sqlite_snapshot_is_one_moment_and_finishes_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    source = tmp_path / "busy.db"
    writer = sqlite3.connect(source, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE alembic_version (version_num TEXT)")
    writer.execute("INSERT INTO alembic_version VALUES ('0012')")
    writer.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, debit INTEGER, credit INTEGER)")
    writer.execute("BEGIN")
    writer.executemany("INSERT INTO ledger (debit, credit) VALUES (?, ?)", [(5, 5)] * 5000)
    writer.execute("COMMIT")
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    steps = 0

    def write_meanwhile() -> None:
        # A transaction committed by another connection between two steps of the copy: SQLite
        # would restart a plain paged backup here; this one neither restarts nor sees it.
        nonlocal steps
        steps += 1
        writer.execute("BEGIN")
        writer.execute("INSERT INTO ledger (debit, credit) VALUES (7, 7)")
        writer.execute("UPDATE ledger SET debit = debit + 1, credit = credit + 1 WHERE id = 1")
        writer.execute("COMMIT")

    copy = tmp_path / "copy.db"
    revision = backup.snapshot_sqlite(source, copy, lambda _: None, 1, write_meanwhile)
    assert revision == "0012"
    assert steps == pages  # one pass: never restarted
    snapshot = sqlite3.connect(copy)
    assert snapshot.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert snapshot.execute("SELECT count(*), sum(debit) FROM ledger").fetchone() == (5000, 25000)
    assert snapshot.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    snapshot.close()
    assert writer.execute("SELECT count(*) FROM ledger").fetchone() == (5000 + steps,)
    writer.close()


def test_backup_on_postgresql_without_pg_dump_says_how_to_install_it_and_what_to_run(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup, "find_tool", lambda name: None)
    url = "postgresql+asyncpg://kith:s3cret-pw@db.example:5433/kithdb"
    archive = cli.cwd / "pg.tar.gz"
    result = cli("backup", str(archive), env={"KITH_DATABASE__URL": url})
    assert result.code == 1
    assert "apt-get install postgresql-client" in result.err
    assert (
        "pg_dump --format=custom --file=kith.pgdump --host=db.example --port=5433 "
        "--username=kith kithdb" in result.err
    )
    assert "s3cret-pw" not in result.err + result.out
    assert not archive.exists()


def test_restore_of_postgresql_refuses_a_database_that_is_not_empty(
    cli: Cli, databases: DatabaseFactory
) -> None:
    if not databases.is_postgres:
        pytest.skip("needs KITH_TEST_POSTGRES_URL (the PostgreSQL round trip is tested with it)")
    _require_postgres_tools()
    _create_user(cli, "alice")
    archive = cli.cwd / "pg.tar.gz"
    made = cli("backup", str(archive))
    assert made.code == 0, made.err
    assert backup.read_manifest(archive).database == "postgresql"
    with tarfile.open(archive, "r:gz") as tar:
        assert backup.POSTGRES_MEMBER in tar.getnames()
    refused = cli("restore", str(archive), "--data-dir", str(cli.cwd / "again"))
    assert refused.code == 1
    assert "is not empty" in refused.err
    assert not (cli.cwd / "again").exists()


def test_archive_members_come_in_the_documented_order(cli: Cli) -> None:
    env = _sqlite_env(cli, cli.cwd / "live")
    assert cli("init", "--data-dir", "live", env={"KITH_DATABASE__URL": ""}).code == 0
    (cli.cwd / "live" / "notes").mkdir()
    (cli.cwd / "live" / "notes" / "welcome.txt").write_text("hello")
    archive = cli.cwd / "ordered.tar.gz"
    made = cli("backup", str(archive), "--config", str(cli.cwd / "live" / "config.toml"), env=env)
    assert made.code == 0, made.err
    with gzip.open(archive) as unzipped, tarfile.open(fileobj=unzipped, mode="r|") as tar:
        names = [member.name for member in tar]
    assert names == [
        backup.MANIFEST,
        backup.CONFIG_MEMBER,
        "files/notes/welcome.txt",
        backup.SQLITE_MEMBER,
    ]


def test_backup_and_restore_are_documented_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["backup", "--help"], ["restore", "--help"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        text = capsys.readouterr().out
        assert "backup" in text or "restore" in text
