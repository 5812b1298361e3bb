"""The streaming API over a real WebSocket and server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import server.api.streaming as streaming_api
import server.streaming as hub_module
from server.identity.accounts import find_account
from server.identity.tokens import revoke_token
from server.social.events import StreamEvent, emit
from server.streaming import (
    NOTIFY_PAYLOAD_BYTES_MAX,
    QUEUE_MESSAGES_MAX,
    StreamHub,
    decode_events,
    encode_events,
)
from tests.api.client import ApiClient, client_for
from tests.databases import postgres_url
from tests.harness import Node, NodeFactory, eventually


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


def _socket(node: Node, client: ApiClient, query: str = "") -> Any:
    return node.http.ws_connect(
        node.url(f"/api/v1/streaming{query}"), headers={"Authorization": f"Bearer {client.token}"}
    )


async def _subscribe(socket: aiohttp.ClientWebSocketResponse, stream: str, **extra: str) -> None:
    await socket.send_json({"type": "subscribe", "stream": stream, **extra})
    await asyncio.sleep(0.05)  # the subscription is taken before anything is posted


async def test_user_stream_hears_updates_notifications_and_deletes(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    bob_id = str((await node.account("bob")).id)
    await alice.post(f"/api/v1/accounts/{bob_id}/follow")
    async with _socket(node, alice) as socket:
        await _subscribe(socket, "user")
        posted = (await bob.post("/api/v1/statuses", status="streamed")).body
        event = await _next_event(socket)
        assert event["event"] == "update"
        assert event["stream"] == ["user"]
        assert isinstance(event["payload"], str)
        assert json.loads(event["payload"])["id"] == posted["id"]

        mine = (await alice.post("/api/v1/statuses", status="like this")).body
        assert (await _next_event(socket))["event"] == "update"  # one's own post
        await bob.post(f"/api/v1/statuses/{mine['id']}/favourite")
        event = await _next_event(socket)
        assert event["event"] == "notification"
        notification = json.loads(event["payload"])
        assert notification["type"] == "favourite"
        assert notification["account"]["username"] == "bob"
        assert notification["status"]["id"] == mine["id"]

        await bob.put(f"/api/v1/statuses/{posted['id']}", status="streamed, edited")
        event = await _next_event(socket)
        assert event["event"] == "status.update"
        assert "edited" in json.loads(event["payload"])["content"]

        await bob.delete(f"/api/v1/statuses/{posted['id']}")
        event = await _next_event(socket)
        assert event == {"stream": ["user"], "event": "delete", "payload": posted["id"]}


async def test_a_streamed_status_is_rendered_as_its_listener_sees_it(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    carol = await client_for(node, "carol")
    original = (await bob.post("/api/v1/statuses", status="worth sharing")).body
    await alice.post(f"/api/v1/statuses/{original['id']}/favourite")
    await alice.post(f"/api/v1/statuses/{original['id']}/bookmark")
    await alice.post(f"/api/v1/accounts/{(await node.account('carol')).id}/follow")
    async with _socket(node, alice, "?stream=user") as socket:
        await asyncio.sleep(0.05)
        boost = (await carol.post(f"/api/v1/statuses/{original['id']}/reblog")).body
        streamed = json.loads((await _next_event(socket))["payload"])
    assert streamed["reblog"]["favourited"] is True
    assert streamed["bookmarked"] is True
    assert streamed == (await alice.get(f"/api/v1/statuses/{boost['id']}")).body


async def test_public_streams_keep_out_private_posts_blocks_and_mutes(node: Node) -> None:
    alice = await client_for(node, "alice")
    names = ("bob", "carol", "dave", "erin")
    people = {name: await client_for(node, name) for name in names}
    ids = {name: (await node.account(name)).id for name in names}
    await alice.post(f"/api/v1/accounts/{ids['bob']}/block")
    await alice.post(f"/api/v1/accounts/{ids['carol']}/mute")
    async with node.http.ws_connect(
        node.url(f"/api/v1/streaming?access_token={alice.token}&stream=public")
    ) as socket:
        await asyncio.sleep(0.05)
        await people["erin"].post("/api/v1/statuses", status="secret", visibility="private")
        await people["bob"].post("/api/v1/statuses", status="blocked")
        await people["carol"].post("/api/v1/statuses", status="muted")
        await people["dave"].post("/api/v1/statuses", status="hi @bob")
        assert await _quiet(socket)
        public = (await people["erin"].post("/api/v1/statuses", status="hello #World")).body
        event = await _next_event(socket)
        assert event["stream"] == ["public"]
        assert json.loads(event["payload"])["id"] == public["id"]

        await _subscribe(socket, "hashtag", tag="World")
        await socket.send_json({"type": "unsubscribe", "stream": "public"})
        await asyncio.sleep(0.05)
        await people["erin"].post("/api/v1/statuses", status="more #world")
        event = await _next_event(socket)
        assert event["stream"] == ["hashtag", "World"]
        await people["erin"].post("/api/v1/statuses", status="not tagged")
        assert await _quiet(socket, 0.3)

        await socket.send_json({"type": "subscribe", "stream": "nonsense"})
        assert "error" in await _next_event(socket)
        await socket.send_json({"type": "subscribe", "stream": "hashtag"})
        assert "error" in await _next_event(socket)
        await socket.send_str("not json")
        assert "error" in await _next_event(socket)


async def test_the_direct_stream_hears_conversations(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    async with _socket(node, bob, "?stream=direct") as socket:
        await asyncio.sleep(0.05)
        sent = (await alice.post("/api/v1/statuses", status="@bob psst", visibility="direct")).body
        event = await _next_event(socket)
    assert event["stream"] == ["direct"]
    assert event["event"] == "conversation"
    conversation = json.loads(event["payload"])
    assert conversation["last_status"]["id"] == sent["id"]
    assert conversation["unread"] is True
    assert [a["username"] for a in conversation["accounts"]] == ["alice"]


async def test_notifications_need_their_scope(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    statuses_only = ApiClient(node, await node.create_token("alice", "read:statuses"))
    mine = (await alice.post("/api/v1/statuses", status="favourite me")).body
    async with _socket(node, statuses_only, "?stream=user") as socket:
        await _subscribe(socket, "user:notification")
        refused = await _next_event(socket)
        assert refused["status"] == 403
        await bob.post(f"/api/v1/statuses/{mine['id']}/favourite")
        assert await _quiet(socket)  # the user stream leaves notifications out
        await alice.post("/api/v1/statuses", status="still hears updates")
        assert (await _next_event(socket))["event"] == "update"
    for path in (
        "/api/v1/streaming/user/notification",
        "/api/v1/streaming?stream=user:notification",
    ):
        async with node.http.get(
            node.url(path), headers={"Authorization": f"Bearer {statuses_only.token}"}
        ) as response:
            assert response.status == 403
    writer = ApiClient(node, await node.create_token("alice", "write"))
    async with node.http.get(
        node.url("/api/v1/streaming/public"), headers={"Authorization": f"Bearer {writer.token}"}
    ) as response:
        assert response.status == 403


async def test_the_token_may_come_as_the_websocket_subprotocol(node: Node) -> None:
    alice = await client_for(node, "alice")
    async with node.http.ws_connect(
        node.url("/api/v1/streaming?stream=user"), protocols=(alice.token or "",)
    ) as socket:
        assert socket.protocol == alice.token
        await alice.post("/api/v1/statuses", status="via subprotocol")
        assert (await _next_event(socket))["event"] == "update"


async def test_streaming_without_a_valid_token_or_stream_is_refused(node: Node) -> None:
    alice = await client_for(node, "alice")
    async with node.http.get(node.url("/api/v1/streaming/user")) as response:
        assert response.status == 401
    for query in ("?stream=user", "?stream=user&access_token=wrong"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with node.http.ws_connect(node.url(f"/api/v1/streaming{query}")):
                pass
        assert refused.value.status == 401
    for query in ("?stream=nonsense", "?stream=hashtag"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with _socket(node, alice, query):
                pass
        assert refused.value.status == 422
    async with node.http.get(
        node.url("/api/v1/streaming/hashtag"), headers={"Authorization": f"Bearer {alice.token}"}
    ) as response:
        assert response.status == 422


async def _sse_lines(node: Node, path: str, token: str | None) -> AsyncIterator[str]:
    async with node.http.get(
        node.url(path), headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for raw in response.content:
            yield raw.decode().rstrip("\n")


async def _sse_events(node: Node, path: str, token: str | None, count: int) -> list[tuple]:
    events: list[tuple] = []
    kind = None
    async for line in _sse_lines(node, path, token):
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((kind, json.loads(line.removeprefix("data: "))))
            if len(events) == count:
                return events
    return events


async def test_server_sent_events_carry_updates_and_notifications(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    public = asyncio.create_task(
        _sse_events(node, "/api/v1/streaming/public/local", alice.token, 1)
    )
    user = asyncio.create_task(_sse_events(node, "/api/v1/streaming/user", alice.token, 2))
    tagged = asyncio.create_task(
        _sse_events(node, "/api/v1/streaming/hashtag?tag=sse", alice.token, 1)
    )
    await asyncio.sleep(0.1)
    posted = (await alice.post("/api/v1/statuses", status="over #SSE")).body
    await bob.post(f"/api/v1/statuses/{posted['id']}/favourite")
    [(kind, status)] = await asyncio.wait_for(public, 5)
    assert (kind, status["id"]) == ("update", posted["id"])
    [(_, tagged_status)] = await asyncio.wait_for(tagged, 5)
    assert tagged_status["id"] == posted["id"]
    heard = await asyncio.wait_for(user, 5)
    assert [kind for kind, _ in heard] == ["update", "notification"]
    assert heard[1][1]["type"] == "favourite"
    async with node.http.get(node.url("/api/v1/streaming/health")) as response:
        assert await response.text() == "OK"


async def test_a_revoked_token_stops_the_stream(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming_api, "TOKEN_RECHECK_S", 0.0)
    alice = await client_for(node, "alice")
    async with _socket(node, alice, "?stream=user") as socket:
        await alice.post("/api/v1/statuses", status="before")
        assert (await _next_event(socket))["event"] == "update"
        async with node.db.transaction() as conn:
            assert await revoke_token(conn, alice.token or "", node.clock())
        await alice.post("/api/v1/statuses", status="after")  # refused: the token is revoked
        async with node.db.transaction() as conn:
            account = await find_account(conn, "alice")
            assert account is not None
            emit(conn, [f"user:{account.id}"], "delete", 1)
        message = await asyncio.wait_for(socket.receive(), 5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_connections_per_account_are_capped(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "CONNECTIONS_PER_ACCOUNT_MAX", 2)
    alice = await client_for(node, "alice")
    async with _socket(node, alice), _socket(node, alice):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with _socket(node, alice):
                pass
        assert refused.value.status == 429
    await asyncio.sleep(0.1)
    async with _socket(node, alice, "?stream=user") as socket:
        await alice.post("/api/v1/statuses", status="a slot was freed")
        assert (await _next_event(socket))["event"] == "update"


async def test_stopping_the_node_closes_open_streams(nodes: NodeFactory) -> None:
    node = await nodes.start()
    alice = await client_for(node, "alice")
    socket = await _socket(node, alice, "?stream=user").__aenter__()
    lines = _sse_lines(node, "/api/v1/streaming/public", alice.token)
    assert await asyncio.wait_for(anext(lines), 5) == ":)"
    await asyncio.wait_for(nodes.stop(node), 10)
    message = await asyncio.wait_for(socket.receive(), 5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(lines), 5)
    await socket.close()


async def test_a_slow_client_is_dropped_and_memory_stays_bounded() -> None:
    rendered: list[int] = []

    async def render(event: StreamEvent, viewers: list) -> dict[int, str]:
        rendered.append(event.subject_id)
        return {viewer.id: str(event.subject_id) for viewer in viewers}

    hub = StreamHub(render)
    viewer = _Viewer(7)
    slow = hub.open(viewer)  # type: ignore[arg-type]
    fast = hub.open(viewer)  # type: ignore[arg-type]
    hub.subscribe(slow, "user:7")
    hub.subscribe(fast, "user:7")
    runner = asyncio.create_task(hub.run())
    received = []

    async def consume() -> None:
        async for message in fast.messages():
            received.append(int(message.payload))

    consumer = asyncio.create_task(consume())
    for n in range(QUEUE_MESSAGES_MAX + 10):
        hub.publish([StreamEvent(("user:7",), "delete", n)])
        await asyncio.sleep(0)
    await eventually(lambda: _done(received, QUEUE_MESSAGES_MAX + 10))
    assert slow.ended
    assert slow.queue.qsize() == 1
    assert slow not in hub._by_stream["user:7"]
    assert received == list(range(QUEUE_MESSAGES_MAX + 10))  # in commit order
    hub.shutdown()
    await asyncio.wait_for(consumer, 1)
    runner.cancel()


class _Viewer:
    def __init__(self, account_id: int) -> None:
        self.id = account_id


async def _done(received: list[int], count: int) -> bool:
    return len(received) == count


def test_events_are_packed_into_notify_payloads_under_the_limit() -> None:
    crowd = StreamEvent(tuple(f"user:{n}" for n in range(10**15, 10**15 + 3000)), "update", 5)
    small = [StreamEvent(("public", "hashtag:café"), "update", 6), StreamEvent(("x",), "delete", 7)]
    payloads = encode_events([*small, crowd, "not an event"])
    assert len(payloads) > 1
    assert all(len(p.encode()) <= NOTIFY_PAYLOAD_BYTES_MAX < 8000 for p in payloads)
    decoded = [event for payload in payloads for event in decode_events(payload)]
    assert decoded[:2] == small
    assert [s for e in decoded[2:] for s in e.streams] == list(crowd.streams)
    assert len(encode_events(small)) == 1
    assert decode_events("[[1, 2]]") == []
    assert decode_events("nonsense") == []


async def test_a_post_to_thousands_of_streams_reaches_its_listener(node: Node) -> None:
    alice = await client_for(node, "alice")
    alice_id = (await node.account("alice")).id
    async with _socket(node, alice, "?stream=user") as socket:
        await asyncio.sleep(0.05)
        async with node.db.transaction() as conn:
            crowd = [f"user:{n}" for n in range(10**15, 10**15 + 3000)]
            emit(conn, [*crowd, f"user:{alice_id}"], "delete", 42)
        assert (await _next_event(socket))["payload"] == "42"


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
