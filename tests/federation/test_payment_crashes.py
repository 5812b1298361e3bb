"""Nodes killed with SIGKILL in the middle of a payment, as `kith serve` processes.

Whenever the nodes die, once they are back every payment ends exactly once, the same on both
sides, each node's `kith payments audit` passes and no money was created or lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from asyncio.subprocess import PIPE, Process
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.databases import DatabaseFactory
from tests.integration.test_serve_process import _free_port, _wait_healthy

KITH = str(Path(sys.executable).parent / "kith")
PASSWORD = "a long enough password"
pytestmark = pytest.mark.slow


@dataclass
class ProcessNode:
    """A `kith serve` process on a loopback port with its own data directory."""

    directory: Path
    port: int
    env: dict[str, str]
    process: Process | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, name: str) -> str:
        return f"{name}@127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            KITH, "serve", cwd=self.directory, env=self.env, stdout=PIPE, stderr=PIPE
        )
        await _wait_healthy(f"{self.base_url}/healthz", self.process)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, whatever was in flight is lost."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def reaped(self) -> None:
        assert self.process is not None
        await self.process.wait()

    async def kith(self, *argv: str, stdin: str | None = None) -> str:
        command = await asyncio.create_subprocess_exec(
            KITH, *argv, cwd=self.directory, env=self.env, stdin=PIPE, stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(
            command.communicate(stdin.encode() if stdin else None), 120
        )
        if command.returncode != 0 and argv[:2] != ("payments", "audit"):
            pytest.fail(f"kith {' '.join(argv)}: {err.decode()}")
        return out.decode() + err.decode()

    async def user(self, name: str) -> None:
        await self.kith("user", "create", name, "--password-stdin", stdin=PASSWORD + "\n")
        self.tokens[name] = (await self.kith("token", "create", name)).strip().splitlines()[-1]

    async def api(self, method: str, path: str, user: str, **kwargs: object) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        headers.update(kwargs.pop("headers", {}))  # type: ignore[arg-type]
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base_url + path, headers=headers, **kwargs) as answer,
        ):
            return answer.status, await answer.json()


async def _node(tmp_path: Path, databases: DatabaseFactory, name: str) -> ProcessNode:
    port = _free_port()
    directory = tmp_path / name
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITH_")}
    env.update(
        {
            "KITH_SERVER__PORT": str(port),
            "KITH_INSTANCE__DOMAIN": f"127.0.0.1:{port}",
            "KITH_INSTANCE__BASE_URL": f"http://127.0.0.1:{port}",
            "KITH_FEDERATION__ALLOW_PRIVATE_ADDRESSES": "true",
            "KITH_PAYMENTS__DEFAULT_CREDIT_LIMIT": "1000",
        }
    )
    if databases.is_postgres:
        env["KITH_DATABASE__URL"] = await databases.new(name)
    return ProcessNode(directory, port, env)


async def _eventually(check, timeout_s: float = 90.0):  # type: ignore[no-untyped-def]
    started = asyncio.get_running_loop().time()
    for _ in range(int(timeout_s * 2)):
        found = await check()
        if found:
            print(f"settled in {asyncio.get_running_loop().time() - started:.1f} s")
            return found
        await asyncio.sleep(0.5)
    pytest.fail(f"not settled within {timeout_s} s")


async def _balance(node: ProcessNode, user: str) -> str:
    _, wallet = await node.api("GET", "/api/kith/v1/wallet", user)
    found = [b["balance"] for b in wallet["balances"] if b["currency"] == "EUR"]
    return found[0] if found else "0.00"


@pytest.mark.parametrize("kill_after_s", [0.0, 0.02, 0.2])
async def test_payer_and_payee_killed_mid_payment_settle_once_after_restart(
    tmp_path: Path, databases: DatabaseFactory, kill_after_s: float
) -> None:
    a, b = await _node(tmp_path, databases, "a"), await _node(tmp_path, databases, "b")
    nodes = (a, b)
    try:
        for node in nodes:
            await node.start()
        await a.user("alice")
        await b.user("bob")
        await a.kith("wallet", "deposit", "alice", "100", "EUR")
        status, request = await b.api(
            "POST",
            "/api/kith/v1/payment_requests",
            "bob",
            json={"payer": a.handle("alice"), "amount": "12.50", "currency": "EUR"},
        )
        assert status == 201, request

        async def incoming() -> list:
            return (await a.api("GET", "/api/kith/v1/payment_requests", "alice"))[1]

        (to_pay,) = await _eventually(incoming)
        status, transfer = await a.api(
            "POST",
            f"/api/kith/v1/payment_requests/{to_pay['id']}/pay",
            "alice",
            headers={"Idempotency-Key": "crash"},
        )
        assert status == 202, transfer
        await asyncio.sleep(kill_after_s)
        for node in nodes:
            node.kill()
        for node in nodes:
            await node.reaped()
            audit = await node.kith("payments", "audit")
            assert "is consistent" in audit, audit
        for node in (b, a):  # the payee first: the payer's resend finds it up
            await node.start()

        async def decided() -> dict | None:
            status, found = await a.api("GET", f"/api/kith/v1/transfers/{transfer['id']}", "alice")
            assert status == 200, found
            return found if found["state"] != "pending" else None

        # A claim on an inbox item by the killed process holds on PostgreSQL until it expires
        # (two minutes: several processes may share the queue); SQLite takes it back at start.
        final = await _eventually(decided, timeout_s=90 if not databases.is_postgres else 200)
        assert final["state"] == "completed", final
        assert final["receipt"]["verified"], final["receipt"]["problems"]
        assert await _balance(a, "alice") == "87.50"
        assert await _balance(b, "bob") == "12.50"
        _, bobs = await b.api("GET", f"/api/kith/v1/payment_requests/{request['id']}", "bob")
        assert bobs["state"] == "paid"
        for node in nodes:
            assert "is consistent (0 transfer(s) pending)" in await node.kith("payments", "audit")
    finally:
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                node.kill()
                await node.reaped()


async def test_two_payer_processes_on_one_database_never_spend_a_wallet_twice(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    if not databases.is_postgres:
        pytest.skip("several node processes share a database on PostgreSQL only")
    a, b = await _node(tmp_path, databases, "a"), await _node(tmp_path, databases, "b")
    twin_port = _free_port()
    (tmp_path / "a2").mkdir()
    twin = ProcessNode(tmp_path / "a2", twin_port, {**a.env, "KITH_SERVER__PORT": str(twin_port)})
    nodes = (a, twin, b)
    try:
        for node in nodes:
            await node.start()
        await a.user("alice")
        await b.user("bob")
        twin.tokens = a.tokens
        await a.kith("wallet", "deposit", "alice", "100", "EUR")
        payee = b.handle("bob")

        async def send(node: ProcessNode, key: str) -> tuple[int, dict]:
            return await node.api(
                "POST",
                "/api/kith/v1/transfers",
                "alice",
                json={"to": payee, "amount": "10.00", "currency": "EUR"},
                headers={"Idempotency-Key": key},
            )

        # 24 payments of 10.00 from a wallet of 100.00, through both processes at once; keys
        # 0-3 are each sent to both processes (a client retrying on the other one).
        attempts = [send(a if i % 2 else twin, f"key-{i}") for i in range(24)]
        attempts += [send(a, f"key-{i}") for i in range(4)]
        answers = await asyncio.gather(*attempts)
        assert {status for status, _ in answers} <= {200, 202, 422}, answers
        taken = {body["id"] for status, body in answers if status in (200, 202)}
        refused = [body["error"] for status, body in answers if status == 422]
        assert len(taken) == 10, answers
        assert all("does not hold enough" in reason for reason in refused), refused

        async def all_settled() -> bool:
            _, history = await a.api("GET", "/api/kith/v1/wallet/transactions", "alice")
            return len(history) == 10 and all(t["state"] == "completed" for t in history)

        await _eventually(all_settled)
        assert await _balance(a, "alice") == "0.00"
        assert await _balance(b, "bob") == "100.00"
        for node in (a, b):
            assert "is consistent (0 transfer(s) pending)" in await node.kith("payments", "audit")
    finally:
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                node.kill()
                await node.reaped()
