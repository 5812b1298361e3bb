"""The streaming API over a real WebSocket and server-sent events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.api.client import client_for
from tests.databases import postgres_url
from tests.harness import Node, NodeFactory


async def _next_event(socket: aiohttp.ClientWebSocketResponse) -> dict:
    message = await asyncio.wait_for(socket.receive(), 5.0)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def _quiet(socket: aiohttp.ClientWebSocketResponse, seconds: float = 0.5) -> bool:
    try:
        message = await asyncio.wait_for(socket.receive(), seconds)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message {message.data}")


async def test_user_stream_hears_updates_notifications_and_deletes(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    bob_id = str((await node.account("bob")).id)
    await alice.post(f"/api/v1/accounts/{bob_id}/follow")
    async with node.http.ws_connect(
        node.url("/api/v1/streaming"), headers={"Authorization": f"Bearer {alice.token}"}
    ) as socket:
        await socket.send_json({"type": "subscribe", "stream": "user"})
        await asyncio.sleep(0.05)
        posted = (await bob.post("/api/v1/statuses", status="streamed")).body
        event = await _next_event(socket)
        assert event["event"] == "update"
        assert event["stream"] == ["user"]
        assert json.loads(event["payload"])["id"] == posted["id"]

        mine = (await alice.post("/api/v1/statuses", status="like this")).body
        assert (await _next_event(socket))["event"] == "update"  # one's own post
        await bob.post(f"/api/v1/statuses/{mine['id']}/favourite")
        event = await _next_event(socket)
        assert event["event"] == "notification"
        notification = json.loads(event["payload"])
        assert notification["type"] == "favourite"
        assert notification["account"]["username"] == "bob"

        await bob.delete(f"/api/v1/statuses/{posted['id']}")
        event = await _next_event(socket)
        assert event == {"stream": ["user"], "event": "delete", "payload": posted["id"]}


async def test_a_strangers_private_post_never_arrives_on_public_streams(node: Node) -> None:
    alice = await client_for(node, "alice")
    carol = await client_for(node, "carol")
    async with node.http.ws_connect(
        node.url(f"/api/v1/streaming?access_token={alice.token}&stream=public")
    ) as socket:
        await asyncio.sleep(0.05)
        await carol.post("/api/v1/statuses", status="secret", visibility="private")
        assert await _quiet(socket)
        public = (await carol.post("/api/v1/statuses", status="hello #world")).body
        event = await _next_event(socket)
        assert json.loads(event["payload"])["id"] == public["id"]
        await socket.send_json({"type": "subscribe", "stream": "hashtag", "tag": "World"})
        await socket.send_json({"type": "unsubscribe", "stream": "public"})
        await asyncio.sleep(0.05)
        await carol.post("/api/v1/statuses", status="more #world")
        event = await _next_event(socket)
        assert event["stream"] == ["hashtag", "world"]
        await socket.send_json({"type": "subscribe", "stream": "nonsense"})
        assert "error" in await _next_event(socket)


async def test_the_token_may_come_as_the_websocket_subprotocol(node: Node) -> None:
    alice = await client_for(node, "alice")
    async with node.http.ws_connect(
        node.url("/api/v1/streaming?stream=user"), protocols=(alice.token or "",)
    ) as socket:
        assert socket.protocol == alice.token
        await alice.post("/api/v1/statuses", status="via subprotocol")
        assert (await _next_event(socket))["event"] == "update"


async def test_streaming_without_a_token_is_refused(node: Node) -> None:
    async with node.http.get(node.url("/api/v1/streaming/user")) as response:
        assert response.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with node.http.ws_connect(node.url("/api/v1/streaming?stream=user")):
            pass
    assert refused.value.status == 401


async def test_server_sent_events_carry_updates(node: Node) -> None:
    alice = await client_for(node, "alice")
    lines: list[str] = []

    async def listen() -> None:
        async with node.http.get(
            node.url("/api/v1/streaming/public/local"),
            headers={"Authorization": f"Bearer {alice.token}"},
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for raw in response.content:
                lines.append(raw.decode().rstrip("\n"))
                if lines[-1].startswith("data: {"):
                    return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.1)
    posted = (await alice.post("/api/v1/statuses", status="over SSE")).body
    await asyncio.wait_for(listener, 5)
    assert "event: update" in lines
    payload: Any = json.loads(lines[-1].removeprefix("data: "))
    assert payload["id"] == posted["id"]
    async with node.http.get(node.url("/api/v1/streaming/health")) as response:
        assert await response.text() == "OK"


@pytest.mark.skipif(
    postgres_url() is None, reason="several node processes share a database on PostgreSQL only"
)
async def test_node_processes_sharing_postgres_hear_each_others_events(
    nodes: NodeFactory,
) -> None:
    first = await nodes.start()
    second = await nodes.start(database_url=first.config.database.url)
    alice = await client_for(first, "alice")
    async with second.http.ws_connect(
        second.url(f"/api/v1/streaming?access_token={alice.token}&stream=user")
    ) as socket:
        await asyncio.sleep(0.2)
        posted = (await alice.post("/api/v1/statuses", status="from the other process")).body
        event = await _next_event(socket)
        assert event["event"] == "update"
        assert json.loads(event["payload"])["id"] == posted["id"]
