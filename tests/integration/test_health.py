"""/healthz: what a load balancer sees when the database answers, and when it does not."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.storage.engine import create_database
from tests.harness import Node

UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"


async def test_healthz_is_ok_when_database_answers(node: Node) -> None:
    async with node.http.get("/healthz") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        body = await response.json()
    assert body == {"status": "ok", "database": "ok"}


async def test_healthz_is_503_when_database_is_unreachable(node: Node) -> None:
    db = create_database(UNREACHABLE_DATABASE, node.config.database)
    client = TestClient(TestServer(create_app(node.config, db, node.clock)))
    await client.start_server()
    try:
        response = await client.get("/healthz")
        assert response.status == 503
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        body = await response.json()
        assert body["status"] == "unavailable"
        assert body["database"] != "ok"
    finally:
        await client.close()
        await db.dispose()


async def test_healthz_does_not_leak_the_database_error(node: Node) -> None:
    db = create_database(UNREACHABLE_DATABASE, node.config.database)
    client = TestClient(TestServer(create_app(node.config, db, node.clock)))
    await client.start_server()
    try:
        response = await client.get("/healthz")
        text = await response.text()
    finally:
        await client.close()
        await db.dispose()
    assert response.status == 503
    assert "127.0.0.1:1" not in text
    assert "postgres" not in text.lower()
    assert "Traceback" not in text
