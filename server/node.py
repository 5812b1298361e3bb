"""Bringing a node up and down: data directory, schema check, instance actor, HTTP server."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from server import __version__
from server.app import create_app, create_worker_app
from server.clock import Clock, utcnow
from server.config import Config, redacted_database_url
from server.identity.accounts import ensure_instance_actor, instance_actor
from server.identity.keys import generate_actor_keys
from server.storage.engine import Database, create_database
from server.storage.schema import check_usable, schema_state, upgrade

log = logging.getLogger("kith.node")

# What one `kith serve` process does: everything, HTTP alone, or the background workers alone.
ROLES = ("all", "web", "worker")


class RoleError(ValueError):
    """A role this deployment cannot run; the message says why and what to do."""


def check_role(role: str, database_url: str) -> None:
    """Refuse a split (web or worker) on SQLite: one process owns a SQLite database."""
    if role not in ROLES:
        raise RoleError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if role != "all" and database_url.startswith("sqlite"):
        raise RoleError(
            f"--role {role} needs PostgreSQL: one process owns a SQLite database (at start it "
            "takes back every claimed inbox item and delivery, which would be another "
            "process's work). Run `kith serve` (--role all), or move to PostgreSQL "
            "(database.url) to run web and worker processes."
        )


def ensure_data_dir(config: Config) -> Path:
    """Create the data directory (owner-only: it holds the database and its private keys)."""
    path = config.data_dir
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


async def open_database(
    config: Config,
    initialize_empty: bool,
    clock: Clock = utcnow,
    progress: Callable[[str], None] = lambda _: None,
) -> Database:
    """Connect, refuse a schema this release cannot use, and make sure the instance actor exists.

    A brand-new, empty database is migrated when `initialize_empty` is set (the development
    node and `kith init`); one at an older revision is refused so that an operator upgrades it
    deliberately, after a backup.
    """
    ensure_data_dir(config)
    db = create_database(config.database.url, config.database)
    try:
        state = await schema_state(db)
        if state.is_empty and initialize_empty:
            progress("initialising a new database")
            await upgrade(db, progress)
        else:
            check_usable(state)
        await ensure_instance_keys(db, clock)
    except BaseException:
        await db.dispose()
        raise
    return db


async def ensure_instance_keys(db: Database, clock: Clock = utcnow) -> None:
    """Create the instance actor and its keys on first start."""
    async with db.read() as conn:
        if await instance_actor(conn) is not None:
            return
    keys = await asyncio.to_thread(generate_actor_keys)
    async with db.transaction() as conn:
        await ensure_instance_actor(conn, keys, clock())
    log.info("created the instance actor and its keys")


def freeze_startup_objects() -> None:
    """Leave what start-up built (modules, compiled statements, the app) out of garbage
    collection: a full collection otherwise scans all of it, a pause of ~50 ms that every
    request in flight waits through (bench/inbox.py's p99)."""
    gc.collect()
    gc.freeze()


async def serve(
    config: Config,
    db: Database,
    clock: Clock = utcnow,
    role: str = "all",
    health_port: int | None = None,
) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly: HTTP and the background workers
    (`all`), HTTP alone (`web`), or the workers alone (`worker`, serving only /healthz, and
    only on `health_port` if one is given)."""
    check_role(role, config.database.url)
    if role == "worker":
        app = create_worker_app(config, db, clock)
        port = health_port
    else:
        app = create_app(config, db, clock, workers=role == "all")
        port = config.server.port
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()  # starts the workers (all, worker)
    if port is not None:
        site = web.TCPSite(runner, config.server.host, port, shutdown_timeout=10)
        await site.start()
    freeze_startup_objects()
    log.info(
        "serving",
        extra={
            "version": __version__,
            "role": role,
            "listen": f"{config.server.host}:{port}" if port is not None else "-",
            "base_url": config.base_url,
            "domain": config.domain,
            "database": redacted_database_url(config.database.url),
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
