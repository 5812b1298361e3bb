"""Real nodes for tests: each an aiohttp server on its own loopback port and database.

node = await nodes.start()
alice = await node.create_user("alice")
token = await node.create_token("alice")
async with node.http.get("/users/alice", headers=AS2) as response: ...
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from server.app import create_app
from server.appkeys import FEDERATION, URLS
from server.clock import Clock
from server.config import Config, load_config
from server.federating import Federation
from server.identity.accounts import Account, create_account, find_account
from server.identity.keys import generate_actor_keys
from server.identity.tokens import DEFAULT_SCOPES, create_token, parse_scopes
from server.node import open_database
from server.storage.engine import Database
from server.urls import Urls
from tests.databases import DatabaseFactory

AS2 = {"Accept": "application/activity+json"}


class FakeClock:
    """A clock that stands still until moved (tests of time windows and expiry)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.now += timedelta(**delta)


@dataclass
class Node:
    """One running node and an HTTP client bound to it."""

    config: Config
    db: Database
    runner: web.AppRunner
    http: aiohttp.ClientSession
    clock: Clock
    users: dict[str, Account] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def domain(self) -> str:
        return self.config.domain

    async def create_user(
        self, username: str, password: str | None = None, **options: object
    ) -> Account:
        """A local account with fresh real keys."""
        keys = await asyncio.to_thread(generate_actor_keys)
        async with self.db.transaction() as conn:
            account = await create_account(
                conn, username, keys, self.clock(), password=password, **options
            )
        self.users[username] = account
        return account

    async def create_token(self, username: str, scopes: str = " ".join(DEFAULT_SCOPES)) -> str:
        """A bearer token for the user, as `kith token create` makes it."""
        async with self.db.transaction() as conn:
            account = await find_account(conn, username)
            assert account is not None, f"no user {username}"
            return await create_token(conn, account.id, parse_scopes(scopes), "test", self.clock())

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def federation(self) -> Federation:
        return self.app[FEDERATION]

    @property
    def urls(self) -> Urls:
        return self.app[URLS]

    def handle(self, username: str) -> str:
        """`username@domain`, as people on other nodes type it."""
        return f"{username}@{self.domain}"

    async def account(self, username: str) -> Account:
        async with self.db.read() as conn:
            account = await find_account(conn, username)
        assert account is not None, f"no user {username}"
        return account

    async def perform(self, action: Callable[..., Awaitable[Any]]) -> Any:
        """Run a social action (conn, now) -> outbound in one transaction, then deliver."""
        return await self.federation.perform(action)


class NodeFactory:
    """Starts nodes on free loopback ports; stops them and drops their databases at the end."""

    def __init__(self, tmp_path: Path, databases: DatabaseFactory) -> None:
        self.tmp_path = tmp_path
        self.databases = databases
        self.nodes: list[Node] = []

    async def start(
        self, clock: Clock | None = None, database_url: str | None = None, **settings: object
    ) -> Node:
        """A running node; `settings` are config keys such as `instance__name="X"`."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        index = len(self.nodes)
        overrides: dict[str, object] = {
            "instance.domain": f"127.0.0.1:{port}",
            "instance.base_url": f"http://127.0.0.1:{port}",
            "server.port": port,
            "storage.data_dir": str(self.tmp_path / f"node{index}"),
            "database.url": database_url or await self.databases.new(f"node{index}", migrated=True),
            "federation.allow_private_addresses": True,
        }
        overrides.update({key.replace("__", "."): value for key, value in settings.items()})
        config = load_config(None, environ={}, overrides=overrides, cwd=self.tmp_path)
        clock = clock or FakeClock()
        db = await open_database(config, initialize_empty=True, clock=clock)
        runner = web.AppRunner(create_app(config, db, clock), access_log=None)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        http = aiohttp.ClientSession(base_url=config.base_url)
        node = Node(config=config, db=db, runner=runner, http=http, clock=clock)
        self.nodes.append(node)
        return node

    async def stop(self, node: Node) -> None:
        """Stop a node's server and workers (its database stays, as after a crash)."""
        await node.runner.cleanup()
        await node.db.dispose()

    async def restart(self, node: Node) -> None:
        """Start a stopped node again on the same port with the same database."""
        port = node.config.server.port
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        node.db = await open_database(node.config, initialize_empty=False, clock=node.clock)
        node.runner = web.AppRunner(create_app(node.config, node.db, node.clock), access_log=None)
        await node.runner.setup()
        await web.SockSite(node.runner, listener).start()

    async def close(self) -> None:
        for node in self.nodes:
            await node.http.close()
            await node.runner.cleanup()
            await node.db.dispose()
        self.nodes.clear()


async def eventually(
    check: Callable[[], Awaitable[Any]],
    until: Callable[[Any], bool] = bool,
    timeout_s: float = 10.0,
    interval_s: float = 0.02,
) -> Any:
    """Poll `check` until `until(value)` holds (default: truthy); fail with its last value."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await check()
        if until(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {value!r})")
        await asyncio.sleep(interval_s)
