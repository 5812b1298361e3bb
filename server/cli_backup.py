"""`kith backup PATH` and `kith restore PATH`: a node's identity, data and config in one file."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from server import __version__, backup
from server.backup import BackupError, Manifest, RestorePlan
from server.cli_support import CommandError, load, say
from server.clock import utcnow
from server.config import (
    CONFIG_FILE_NAME,
    Config,
    ConfigError,
    find_config_file,
    load_config,
    redacted_database_url,
)
from server.identity.accounts import list_accounts
from server.storage.engine import create_database
from server.storage.schema import head_revision, revision_is_known, schema_state

_WHAT = (
    "The archive holds the database (every account's keys are in it), the config file in use "
    "and every other file under the data directory, with a manifest of their SHA-256 sums. It "
    "is as secret as the data directory: keep it private (it is written readable by you only)."
)


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    made = commands.add_parser(
        "backup",
        parents=[common],
        help="write a consistent backup of the node, running or not, to one file",
        description="Write PATH, a new .tar.gz, while the node may keep serving: SQLite is "
        "copied with its online backup API (one consistent snapshot), PostgreSQL with pg_dump "
        "--format=custom (which must be installed). " + _WHAT + " PATH is never overwritten "
        "and appears only once complete.",
    )
    made.add_argument("path", metavar="PATH", help="the archive to write, e.g. kith.tar.gz")
    made.set_defaults(run=cmd_backup)
    restored = commands.add_parser(
        "restore",
        parents=[common],
        help="restore a backup into an empty data directory (and an empty database)",
        description="Check every file of PATH against its manifest, then restore it into the "
        "node the config describes: the data directory must hold no database (for PostgreSQL, "
        "database.url must name an empty database: pg_restore loads it). With no config file "
        "in use, the archive's config is installed as DATA_DIR/config.toml, pointed at "
        "DATA_DIR. A corrupt archive, a non-empty target or a schema newer than this release "
        "changes nothing.",
    )
    restored.add_argument("path", metavar="PATH", help="an archive written by `kith backup`")
    restored.add_argument(
        "--data-dir",
        metavar="DIR",
        help="restore into DIR (storage.data_dir; default: the config's, else ./kith-data)",
    )
    restored.set_defaults(run=cmd_restore)


def _absolute(path: str) -> Path:
    return Path(path).expanduser().absolute()


def _config_file(args: argparse.Namespace) -> Path | None:
    found = find_config_file(getattr(args, "config", None), os.environ, Path.cwd())
    return found.expanduser().absolute() if found is not None else None


async def cmd_backup(args: argparse.Namespace) -> int:
    config = load(args)
    config_file = _config_file(args)
    try:
        target = backup.check_target(Path(args.path))
        postgres = None
        if not config.database.url.startswith("sqlite"):
            postgres = (_tool("pg_dump", config), await _postgres_revision(config))
        say(f"backing up {config.domain}: {redacted_database_url(config.database.url)}")
        result = await asyncio.to_thread(
            backup.create_backup, config, config_file, target, say, utcnow(), postgres
        )
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    files = len(result.manifest.data_files())
    config_part = f"config {config_file}, " if config_file else "no config file, "
    say(
        f"backup written to {result.path}: {backup.mib(result.size)}, "
        f"{backup.describe(result.manifest).split(', node')[0]}, {config_part}"
        f"{files} other file(s), in {result.seconds:.1f} s"
    )
    return 0


def _tool(name: str, config: Config) -> str:
    found = backup.find_tool(name)
    if found is not None:
        return found
    if name == "pg_dump":
        raise CommandError(
            f"pg_dump is not installed: {backup.INSTALL_HINT}, then run `kith backup` again. "
            f"Or dump the database yourself with `{backup.manual_pg_dump(config.database.url)}` "
            f"and keep kith.pgdump with copies of your config file and {config.data_dir}"
        )
    raise CommandError(f"{name} is not installed: {backup.INSTALL_HINT}")


async def _postgres_revision(config: Config) -> str:
    db = create_database(config.database.url, config.database)
    try:
        state = await schema_state(db)
    except (OSError, DBAPIError) as exc:
        raise CommandError(_unreachable(config, exc)) from None
    finally:
        await db.dispose()
    if state.current is None:
        raise CommandError(
            f"{redacted_database_url(config.database.url)} holds no Kith database: nothing to "
            "back up"
        )
    return state.current


def _unreachable(config: Config, exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return f"cannot use {redacted_database_url(config.database.url)}: {cause}"


async def cmd_restore(args: argparse.Namespace) -> int:
    archive = _absolute(args.path)
    config_file = _config_file(args)
    config = load(args, {"storage.data_dir": args.data_dir})
    started = asyncio.get_running_loop().time()
    try:
        manifest = await asyncio.to_thread(backup.read_manifest, archive)
        say(f"archive: {backup.describe(manifest)}")
        _check_revision(manifest)
        plan = await asyncio.to_thread(_plan, archive, manifest, config, config_file)
        pg_restore = await _check_target(plan)
        say("verifying every file against the manifest")
        await asyncio.to_thread(backup.verify_archive, archive, manifest, say)
        await asyncio.to_thread(backup.restore, plan, say, pg_restore)
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    seconds = asyncio.get_running_loop().time() - started
    await _report(plan, args, seconds)
    return 0


def _check_revision(manifest: Manifest) -> None:
    if not revision_is_known(manifest.schema_revision):
        raise CommandError(
            f"the backup's database is at schema revision {manifest.schema_revision}, newer than "
            f"this Kith ({__version__}, revision {head_revision()}) knows: restore it with Kith "
            f"{manifest.kith_version} or newer. Nothing was restored."
        )


def _plan(
    archive: Path, manifest: Manifest, config: Config, config_file: Path | None
) -> RestorePlan:
    """The restored node's config: the one in use, else the archive's pointed at the new
    data directory, else the defaults and the environment."""
    if config_file is not None or not manifest.has_config:
        return RestorePlan(archive, manifest, config, config_file, None)
    installed = backup.with_data_dir(backup.read_config_member(archive, manifest), config.data_dir)
    destination = config.data_dir / CONFIG_FILE_NAME
    with tempfile.TemporaryDirectory(prefix="kith-restore-") as folder:
        candidate = Path(folder) / CONFIG_FILE_NAME
        candidate.write_text(installed, encoding="utf-8")
        try:
            restored = load_config(candidate, os.environ, cwd=config.data_dir)
        except ConfigError as exc:
            raise CommandError(f"the backup's config is not valid here: {exc}") from None
    if restored.data_dir != config.data_dir:
        raise CommandError(
            f"the backup's config would use {restored.data_dir} as its data directory, not "
            f"{config.data_dir} (is KITH_STORAGE__DATA_DIR set?); nothing was restored"
        )
    return RestorePlan(archive, manifest, restored, destination, installed)


async def _check_target(plan: RestorePlan) -> str | None:
    """Refuse a target that is not empty or not of the archive's kind; return pg_restore's
    path for PostgreSQL."""
    url = redacted_database_url(plan.config.database.url)
    if plan.manifest.database == "sqlite" and not plan.is_sqlite:
        raise CommandError(
            f"the backup holds a SQLite database but database.url is {url}: restore it into "
            "SQLite (leave database.url empty); moving between SQLite and PostgreSQL is not "
            "supported"
        )
    if plan.manifest.database == "postgresql" and plan.is_sqlite:
        raise CommandError(
            "the backup holds a PostgreSQL database: set database.url (or KITH_DATABASE__URL) "
            "to an empty PostgreSQL database to restore it into"
        )
    existing = backup.existing_targets(plan)
    if existing:
        shown = ", ".join(str(path) for path in existing[:3])
        raise CommandError(
            f"{plan.data_dir} is not empty: {shown} already exist(s). Restore into an empty "
            "data directory (--data-dir DIR) or move them away; nothing was restored"
        )
    if plan.is_sqlite:
        return None
    tool = _tool("pg_restore", plan.config)
    tables = await _postgres_tables(plan.config)
    if tables:
        raise CommandError(
            f"the database {url} is not empty ({tables} tables): restore needs an empty "
            "database (e.g. createdb kith_restored); nothing was restored"
        )
    return tool


async def _postgres_tables(config: Config) -> int:
    db = create_database(config.database.url, config.database)
    try:
        async with db.read() as conn:
            found = await conn.scalar(
                text(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            )
    except (OSError, DBAPIError) as exc:
        raise CommandError(_unreachable(config, exc)) from None
    finally:
        await db.dispose()
    return int(found or 0)


async def _report(plan: RestorePlan, args: argparse.Namespace, seconds: float) -> None:
    """What was restored, checked by opening it, and what to run next."""
    db = create_database(plan.config.database.url, plan.config.database)
    try:
        state = await schema_state(db)
        counted = ""
        if state.is_current:  # an older schema may lack columns the query reads
            async with db.read() as conn:
                counted = f" ({len(await list_accounts(conn))} local account(s))"
    finally:
        await db.dispose()
    kind = "SQLite" if plan.is_sqlite else "PostgreSQL"
    config_part = f", config {plan.config_file}" if plan.install_config is not None else ""
    say(
        f"restored {plan.archive.name} into {plan.data_dir}: {kind} database at schema "
        f"revision {state.current}{counted}{config_part}, "
        f"{len(plan.manifest.data_files())} other file(s), in {seconds:.1f} s"
    )
    if plan.config.domain != plan.manifest.domain:
        say(
            f"warning: this config's domain is {plan.config.domain} but the backup is of "
            f"{plan.manifest.domain}: actor ids contain the domain, so serve it as "
            f"{plan.manifest.domain} (instance.domain) or peers will not recognise it"
        )
    for line in _next_steps(plan, args, needs_upgrade=not state.is_current):
        say(line)


def _next_steps(plan: RestorePlan, args: argparse.Namespace, needs_upgrade: bool) -> list[str]:
    prefix = ""
    if args.data_dir and plan.install_config is None:
        prefix = f"KITH_STORAGE__DATA_DIR={plan.data_dir} "
    config = f" --config {plan.config_file}" if plan.config_file is not None else ""
    steps = ["next:"]
    if needs_upgrade:
        steps.append(
            f"  {prefix}kith db upgrade{config}   # the backup's schema is older than this "
            f"release's ({head_revision()}): this migrates it"
        )
    steps.append(f"  {prefix}kith serve{config}")
    if "KITH_DATABASE__URL" in os.environ:
        steps.append("  (keep KITH_DATABASE__URL as it is now: it names the restored database)")
    return steps
