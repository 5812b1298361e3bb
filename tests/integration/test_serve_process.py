"""`kith serve` as a newcomer runs it: a subprocess in an empty directory, no config at all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from asyncio.subprocess import PIPE, Process
from pathlib import Path

import aiohttp
import pytest

from tests.databases import DatabaseFactory

KITH = str(Path(sys.executable).parent / "kith")
PASSWORD = "a long enough password"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _wait_healthy(url: str, process: Process, timeout_s: float = 30) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(timeout_s * 10)):
            if process.returncode is not None:
                pytest.fail(f"kith serve exited early with status {process.returncode}")
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail("kith serve did not become healthy")


@pytest.mark.slow
async def test_kith_serve_in_an_empty_directory_serves_webfinger_for_a_new_user(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITH_")}
    env["KITH_SERVER__PORT"] = str(port)
    if databases.is_postgres:
        env["KITH_DATABASE__URL"] = await databases.new("serve")
    server = await asyncio.create_subprocess_exec(
        KITH, "serve", cwd=tmp_path, env=env, stdout=PIPE, stderr=PIPE
    )
    try:
        base = f"http://localhost:{port}"
        await _wait_healthy(f"{base}/healthz", server)
        creator = await asyncio.create_subprocess_exec(
            KITH,
            "user",
            "create",
            "alice",
            "--password-stdin",
            cwd=tmp_path,
            env=env,
            stdin=PIPE,
            stdout=PIPE,
            stderr=PIPE,
        )
        created_out, created_err = await asyncio.wait_for(
            creator.communicate((PASSWORD + "\n").encode()), 60
        )
        assert creator.returncode == 0, created_err
        assert f"@alice@localhost:{port}".encode() in created_out
        async with aiohttp.ClientSession() as http:
            resource = f"acct:alice@localhost:{port}"
            async with http.get(
                f"{base}/.well-known/webfinger", params={"resource": resource}
            ) as r:
                assert r.status == 200
                jrd = await r.json(content_type=None)
            actor_url = next(link["href"] for link in jrd["links"] if link["rel"] == "self")
            assert actor_url == f"{base}/users/alice"
            headers = {"Accept": "application/activity+json"}
            async with http.get(actor_url, headers=headers) as r:
                assert r.status == 200
                assert (await r.json(content_type=None))["id"] == actor_url
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(server.communicate(), 20)
    assert server.returncode == 0, err
    logs = (out + err + created_out + created_err).decode()
    assert "serving" in logs
    assert "PRIVATE KEY" not in logs
    assert PASSWORD not in logs
    data_dir = tmp_path / "kith-data"
    assert data_dir.is_dir()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
