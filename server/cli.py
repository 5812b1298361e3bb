"""`kith`: the operator's command line. Every command exits 0 on success, 1 with a reason."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.multibase import encode_ed25519_multikey
from server import __version__, cli_admin, cli_backup, cli_invites, cli_payments, cli_status
from server.cli_support import CommandError, load, say, with_database
from server.clock import utcnow
from server.config import (
    CONFIG_FILE_NAME,
    ConfigError,
    load_config,
    redacted_database_url,
    render_example,
)
from server.identity.accounts import (
    SIGNING_KEY_FRESH,
    Account,
    InvalidUsername,
    UsernameTaken,
    create_account,
    find_account,
    instance_actor,
    list_accounts,
    public_keys,
    rotate_signing_key,
)
from server.identity.keys import generate_actor_keys
from server.identity.password_resets import set_password
from server.identity.passwords import (
    WeakPassword,
    check_password_rules,
    generate_password,
    hash_password,
)
from server.identity.registration import account_by_email, email_errors, normalize_email
from server.identity.tokens import DEFAULT_SCOPES, InvalidScope, create_token, parse_scopes
from server.logs import configure_logging
from server.node import ROLES, RoleError, check_role, ensure_data_dir, open_database, serve
from server.storage.engine import Database, create_database
from server.storage.schema import SchemaError, schema_state, upgrade
from server.storage.tables import accounts
from server.urls import Urls


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kith` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        return asyncio.run(args.run(args)) or 0
    except (CommandError, ConfigError, SchemaError, OSError) as exc:
        print(f"kith: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """All commands and their options; `kith --help` and `kith CMD --help` print from here."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $KITH_CONFIG, else ./kith-data/config.toml if present, "
        "else built-in defaults)",
    )
    parser = argparse.ArgumentParser(
        prog="kith",
        description="Kith: a federated server for posts, private chat and payments.",
        epilog="Run `kith COMMAND --help` for a command's options. Any config key can be set "
        "with an environment variable KITH_SECTION__KEY (e.g. KITH_DATABASE__URL).",
    )
    parser.add_argument("--version", action="version", version=f"kith {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_init(commands)
    _add_serve(commands, common)
    _add_db(commands, common)
    _add_user(commands, common)
    _add_token(commands, common)
    _add_config(commands, common)
    cli_payments.add_commands(commands, common)
    cli_backup.add_commands(commands, common)
    cli_status.add_commands(commands, common)
    cli_admin.add_commands(commands, common)
    cli_invites.add_commands(commands, common)
    return parser


def _add_init(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser(
        "init",
        help="write a commented config, create the database and the instance keys",
        description="Prepare a data directory: DATA_DIR/config.toml, the database (migrated) "
        "and the instance actor's keys. Refuses to overwrite an existing config without --force.",
    )
    init.add_argument("--data-dir", default="kith-data", help="default: ./kith-data")
    init.add_argument("--domain", help="public domain, as in @alice@DOMAIN")
    init.add_argument("--base-url", help="URL peers reach this node at (default https://DOMAIN)")
    init.add_argument(
        "--database", metavar="URL", help="database URL (default: SQLite in DATA_DIR)"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing config file")
    init.set_defaults(run=cmd_init)


def _add_serve(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    serve_cmd = commands.add_parser(
        "serve",
        parents=[common],
        help="run the node",
        description="Run the node. With no config and no data directory it creates ./kith-data "
        "and serves a development node at http://localhost:8080. On PostgreSQL the node can "
        "be split into processes sharing the database: web processes (behind a reverse "
        "proxy) and worker processes; see README.md, Running several processes.",
    )
    serve_cmd.add_argument("--host", help="address to listen on (server.host)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (server.port)")
    serve_cmd.add_argument(
        "--role",
        choices=ROLES,
        default="all",
        help="all (default): HTTP and the background workers in one process; web: HTTP only "
        "(client API, inboxes, ActivityPub documents, streaming), no background work; "
        "worker: inbox processing, deliveries, payment resends, expiry and sweeps, no HTTP. "
        "web and worker need PostgreSQL",
    )
    serve_cmd.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="worker only: serve GET /healthz on this port (on server.host); by default a "
        "worker serves no HTTP",
    )
    serve_cmd.set_defaults(run=cmd_serve)


def _add_db(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    db = commands.add_parser("db", help="database schema: status and upgrades")
    sub = db.add_subparsers(title="db commands", metavar="COMMAND", required=True)
    sub.add_parser(
        "upgrade",
        parents=[common],
        help="apply pending migrations (back up first)",
        description="Apply every pending migration, printing each step. Safe to run twice.",
    ).set_defaults(run=cmd_db_upgrade)
    sub.add_parser(
        "status", parents=[common], help="show the schema revision and pending migrations"
    ).set_defaults(run=cmd_db_status)


def _add_user(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    user = commands.add_parser("user", help="local accounts")
    sub = user.add_subparsers(title="user commands", metavar="COMMAND", required=True)
    create = sub.add_parser(
        "create",
        parents=[common],
        help="create an account",
        description="Create a local account with fresh keys. Without --password-stdin a "
        "random password is generated and printed once.",
    )
    create.add_argument("name", help="username: letters, digits and underscores, at most 30")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.add_argument("--display-name", default="", metavar="TEXT")
    create.add_argument("--admin", action="store_true", help="make the account an administrator")
    create.add_argument("--bot", action="store_true", help="mark the account as automated")
    create.add_argument(
        "--email", metavar="ADDRESS", help="for password resets by email (needs [smtp])"
    )
    create.set_defaults(run=cmd_user_create)
    sub.add_parser("list", parents=[common], help="list accounts").set_defaults(run=cmd_user_list)
    reset = sub.add_parser(
        "reset-password",
        parents=[common],
        help="set a new password and sign the account out everywhere",
        description="Set a new password for NAME and revoke every token it has (every app "
        "must sign in again). Without --password-stdin a random password is generated and "
        "printed once.",
    )
    reset.add_argument("name")
    reset.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    reset.set_defaults(run=cmd_user_reset_password)
    email = sub.add_parser(
        "set-email",
        parents=[common],
        help="set (or, without ADDRESS, remove) an account's email address",
        description="An account's address is used only to send it password reset links.",
    )
    email.add_argument("name")
    email.add_argument("address", nargs="?", default="")
    email.set_defaults(run=cmd_user_set_email)
    show = sub.add_parser("show", parents=[common], help="show one account and its public keys")
    show.add_argument("name")
    show.set_defaults(run=cmd_user_show)
    rotate = sub.add_parser(
        "rotate-key",
        parents=[common],
        help="give an account (or, with --instance, the node) a new Ed25519 signing key",
        description="A new Ed25519 key signs the account's payment requests (the node's: its "
        "transfers, decisions and statements) from now on. The old key stays in the actor "
        "document under its own id, so receipts and statements it signed still verify; peers "
        "fetch the new key when they first see it. Restart the node (every process) "
        "afterwards: running processes keep signing with the key they loaded.",
    )
    target = rotate.add_mutually_exclusive_group(required=True)
    target.add_argument("name", nargs="?")
    target.add_argument("--instance", action="store_true", help="the node's own key")
    rotate.set_defaults(run=cmd_user_rotate_key)


def _add_token(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    token = commands.add_parser("token", help="access tokens for scripts and tests")
    sub = token.add_subparsers(title="token commands", metavar="COMMAND", required=True)
    create = sub.add_parser(
        "create",
        parents=[common],
        help="print a new bearer token for a user",
        description="Create an access token for NAME and print it (it is stored only as a "
        "hash, so this is the only time it is shown).",
    )
    create.add_argument("name", help="the account's username")
    create.add_argument(
        "--scopes",
        default=" ".join(DEFAULT_SCOPES),
        help='space-separated (default: "%(default)s")',
    )
    create.add_argument("--label", default="kith token create", help="a note on what it is for")
    create.set_defaults(run=cmd_token_create)


def _add_config(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    config = commands.add_parser("config", help="inspect configuration")
    sub = config.add_subparsers(title="config commands", metavar="COMMAND", required=True)
    sub.add_parser(
        "check",
        parents=[common],
        help="validate the config (file + environment) and print the result",
    ).set_defaults(run=cmd_config_check)
    sub.add_parser("example", help="print a config file with every key documented").set_defaults(
        run=cmd_config_example
    )


async def cmd_init(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).expanduser().resolve()
    config_path = data_dir / CONFIG_FILE_NAME
    if config_path.exists() and not args.force:
        raise CommandError(f"{config_path} exists; pass --force to overwrite it")
    values: dict[str, object] = {"storage.data_dir": str(data_dir)}
    for key, value in (
        ("instance.domain", args.domain),
        ("instance.base_url", args.base_url),
        ("database.url", args.database),
    ):
        if value:
            values[key] = value
    text = render_example(values)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = config_path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    config = load_config(temporary, os.environ, cwd=data_dir)  # validate before replacing
    temporary.chmod(0o600)  # it may hold a database password
    temporary.replace(config_path)
    db = await open_database(config, initialize_empty=True, progress=say)
    await db.dispose()
    say(f"wrote {config_path}")
    say(f"node {config.domain} at {config.base_url}, data in {config.data_dir}")
    say(f"start it with: kith serve --config {config_path}")
    return 0


async def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {"server.host": args.host, "server.port": args.port}
    config = load(args, overrides)
    role, health_port = args.role, args.health_port
    try:
        check_role(role, config.database.url)
    except RoleError as exc:
        raise CommandError(str(exc)) from None
    if health_port is not None and role != "worker":
        raise CommandError("--health-port is for --role worker (web processes serve /healthz)")
    configure_logging(config.logging.level, config.logging.format)
    # Processes of a split start together: an empty database is set up by `kith db upgrade`
    # beforehand rather than by whichever process wins the race.
    db = await open_database(config, initialize_empty=role == "all", progress=say)
    try:
        shown = "" if role == "all" else f" ({role})"
        say(f"Kith {__version__}{shown}: {config.base_url} (data in {config.data_dir})")
        await serve(config, db, role=role, health_port=health_port)
    finally:
        await db.dispose()
    return 0


async def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = load(args)
    ensure_data_dir(config)
    db = create_database(config.database.url, config.database)
    try:
        before = await schema_state(db)
        if before.is_current:
            say(f"the schema is up to date (revision {before.head})")
            return 0
        after = await upgrade(db, progress=say)
        say(f"the schema is now at revision {after.current}")
    finally:
        await db.dispose()
    return 0


async def cmd_db_status(args: argparse.Namespace) -> int:
    config = load(args)
    if config.database.url.startswith("sqlite"):
        sqlite_file = Path(make_url(config.database.url).database or "")
        if not sqlite_file.is_file():
            raise CommandError(f"no database at {sqlite_file} yet: run `kith init` or `kith serve`")
    db = create_database(config.database.url, config.database)
    try:
        state = await schema_state(db)
    finally:
        await db.dispose()
    say(f"database: {redacted_database_url(config.database.url)}")
    say(f"current revision: {state.current or 'none (empty database)'}")
    say(f"this release's revision: {state.head}")
    if not state.is_known:
        say("status: written by a newer Kith release; this release will not start on it")
        return 1
    if state.is_current:
        say("status: up to date")
        return 0
    say(f"status: {len(state.pending)} pending migration(s); run `kith db upgrade`")
    for step in state.pending:
        say(f"  {step}")
    return 0


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from standard input, or a generated one; and whether it was generated."""
    if args.password_stdin:
        password, generated = sys.stdin.readline().rstrip("\r\n"), False
    else:
        password, generated = generate_password(), True
    try:
        check_password_rules(password)
    except WeakPassword as exc:
        raise CommandError(str(exc)) from None
    return password, generated


def _email_address(text: str | None) -> str | None:
    """The address as accounts keep it, or None; CommandError when it is not one."""
    if not text or not text.strip():
        return None
    if email_errors(text):
        raise CommandError(f"{text!r} is not an email address")
    return normalize_email(text)


async def cmd_user_create(args: argparse.Namespace) -> int:
    config = load(args)
    password, generated = _new_password(args)
    email = _email_address(args.email)
    keys = await asyncio.to_thread(generate_actor_keys)

    async def work(db: Database) -> int:
        try:
            async with db.transaction() as conn:
                account = await create_account(
                    conn,
                    args.name,
                    keys,
                    utcnow(),
                    password=password,
                    display_name=args.display_name,
                    is_admin=args.admin,
                    is_bot=args.bot,
                    email=email,
                )
        except UsernameTaken as exc:
            if email is not None and await _email_taken(db, email):
                raise CommandError(f"another account has the address {email}") from None
            raise CommandError(str(exc)) from None
        except InvalidUsername as exc:
            raise CommandError(str(exc)) from None
        urls = Urls(config.base_url, config.domain)
        say(f"created @{urls.handle(account)} (id {account.id})")
        say(f"actor: {urls.actor(account)}")
        if generated:
            say(f"password: {password}")
        return 0

    return await with_database(config, work)


async def _email_taken(db: Database, email: str) -> bool:
    async with db.read() as conn:
        return await account_by_email(conn, email) is not None


async def _local_user(conn: AsyncConnection, name: str) -> Account:
    account = await find_account(conn, name)
    if account is None or account.is_instance_actor:
        raise CommandError(f"no account named {name!r}")
    if account.is_deleted:
        raise CommandError(f"the account {name!r} is deleted")
    return account


async def cmd_user_reset_password(args: argparse.Namespace) -> int:
    config = load(args)
    password, generated = _new_password(args)
    password_hash = await asyncio.to_thread(hash_password, password)

    async def work(db: Database) -> int:
        async with db.transaction() as conn:
            account = await _local_user(conn, args.name)
            revoked = await set_password(conn, account, password_hash, utcnow())
        say(f"password of {account.username} changed; {revoked} token(s) revoked")
        if generated:
            say(f"password: {password}")
        return 0

    return await with_database(config, work)


async def cmd_user_set_email(args: argparse.Namespace) -> int:
    config = load(args)
    email = _email_address(args.address)

    async def work(db: Database) -> int:
        try:
            async with db.transaction() as conn:
                account = await _local_user(conn, args.name)
                await conn.execute(
                    update(accounts).where(accounts.c.id == account.id).values(email=email)
                )
        except IntegrityError:
            raise CommandError(f"another account has the address {email}") from None
        say(f"{account.username}: " + (f"email {email}" if email else "no email address"))
        return 0

    return await with_database(config, work)


async def cmd_user_list(args: argparse.Namespace) -> int:
    config = load(args)

    async def work(db: Database) -> int:
        async with db.read() as conn:
            found = await list_accounts(conn)
        if not found:
            say("no accounts yet: create one with `kith user create NAME`")
            return 0
        say(f"{'id':<20} {'username':<30} {'admin':<5} {'state':<9} {'created':<16} email")
        for account in found:
            state = "active"
            if account.is_deleted:
                state = "deleted"
            elif account.is_suspended:
                state = "suspended"
            elif account.is_pending:
                state = "pending"
            admin = "yes" if account.is_admin else "no"
            created = account.created_at.strftime("%Y-%m-%d %H:%M")
            say(
                f"{account.id:<20} {account.username:<30} {admin:<5} {state:<9} {created:<16} "
                f"{account.email or '-'}"
            )
        return 0

    return await with_database(config, work)


async def cmd_user_show(args: argparse.Namespace) -> int:
    config = load(args)

    async def work(db: Database) -> int:
        async with db.read() as conn:
            account = await find_account(conn, args.name)
            if account is None or account.is_instance_actor:
                raise CommandError(f"no account named {args.name!r}")
            keys = await public_keys(conn, account.id)
        urls = Urls(config.base_url, config.domain)
        der = serialization.load_pem_public_key(keys.rsa_public_pem.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        rows = {
            "handle": f"@{urls.handle(account)}",
            "id": account.id,
            "actor": urls.actor(account),
            "profile": urls.profile(account),
            "type": account.actor_type,
            "display name": account.display_name or "-",
            "admin": "yes" if account.is_admin else "no",
            "email": account.email or "-",
            "approved": "yes" if account.approved else "no (waiting: kith admin approve)",
            "password login": "yes" if account.has_password else "no",
            "created": account.created_at.isoformat(),
            "last active": account.last_active_at.isoformat()
            if account.last_active_at
            else "never",
            "deleted": account.deleted_at.isoformat() if account.deleted_at else "no",
            "RSA key (SHA-256 of SPKI)": hashlib.sha256(der).hexdigest(),
            "Ed25519 key (multikey)": encode_ed25519_multikey(keys.ed25519_public),
        }
        for label, value in rows.items():
            say(f"{label + ':':<27} {value}")
        return 0

    return await with_database(config, work)


async def cmd_user_rotate_key(args: argparse.Namespace) -> int:
    config = load(args)

    async def work(db: Database) -> int:
        async with db.transaction() as conn:
            if args.instance:
                account = await instance_actor(conn)
                if account is None:
                    raise CommandError("this node has no instance actor yet (kith init)")
            else:
                account = await _local_user(conn, args.name)
            fragment = await rotate_signing_key(conn, account.id, utcnow())
        urls = Urls(config.base_url, config.domain)
        say(f"{urls.actor(account)}#{fragment} now signs; the old key stays published")
        minutes = int(SIGNING_KEY_FRESH.total_seconds() // 60)
        say(f"running node processes sign with it within {minutes} minute(s)")
        return 0

    return await with_database(config, work)


async def cmd_token_create(args: argparse.Namespace) -> int:
    config = load(args)
    try:
        scopes = parse_scopes(args.scopes)
    except InvalidScope as exc:
        raise CommandError(str(exc)) from None

    async def work(db: Database) -> int:
        async with db.transaction() as conn:
            account = await find_account(conn, args.name)
            if account is None or account.is_instance_actor:
                raise CommandError(f"no account named {args.name!r}")
            if account.is_deleted:
                raise CommandError(f"the account {args.name!r} is deleted")
            token = await create_token(conn, account.id, scopes, args.label[:100], utcnow())
        say(token)
        return 0

    return await with_database(config, work)


async def cmd_config_check(args: argparse.Namespace) -> int:
    config = load(args)
    shown = asdict(config)
    shown["database"]["url"] = redacted_database_url(config.database.url)
    if config.metrics.token:
        shown["metrics"]["token"] = "(set, not shown)"  # noqa: S105 - a mask, not a secret
    if config.smtp.password:
        shown["smtp"]["password"] = "(set, not shown)"  # noqa: S105 - a mask, not a secret
    for section, values in shown.items():
        say(f"[{section}]")
        for key, value in values.items():
            say(f"{key} = {value!r}")
    say("config is valid")
    return 0


async def cmd_config_example(args: argparse.Namespace) -> int:
    sys.stdout.write(render_example())
    return 0
