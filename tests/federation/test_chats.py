"""A group chat across three Kith nodes: messages, members added and leaving, a rename,
read receipts, and people outside it who see nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from federation.tables import deliveries
from tests.api.client import ApiClient, client_for
from tests.api.test_media import picture, upload
from tests.harness import Node, eventually


async def _chat_on(client: ApiClient, uri: str) -> dict[str, Any]:
    """The chat with this context as the client's user sees it, once it has arrived."""

    async def arrived() -> dict[str, Any] | None:
        listed = (await client.get("/api/kith/v1/chats")).body
        return next((c for c in listed if c["uri"] == uri), None)

    return await eventually(arrived, interval_s=0.2)


def _accts(chat: dict[str, Any]) -> list[str]:
    return sorted(m["account"]["acct"] for m in chat["members"])


async def _until(client: ApiClient, path: str, check: Any) -> dict[str, Any]:
    async def seen() -> dict[str, Any] | None:
        body = (await client.get(path)).body
        return body if check(body) else None

    return await eventually(seen, interval_s=0.2)


async def test_a_group_chat_works_across_three_nodes(trio: tuple[Node, Node, Node]) -> None:
    a, b, c = trio
    alice = await client_for(a, "alice")
    bob = await client_for(b, "bob")
    carol = await client_for(c, "carol")
    dave = await client_for(c, "dave")
    outsiders = [await client_for(node, "eve") for node in trio]
    made = await alice.post(
        "/api/kith/v1/chats", acct=[f"bob@{b.domain}", f"carol@{c.domain}"], name="Trip"
    )
    assert made.status == 200, made.body
    uri = made.body["uri"]
    # The other nodes learn the group, its name and members, before any message.
    for client, me in ((bob, "bob"), (carol, "carol")):
        seen = await _chat_on(client, uri)
        assert seen["name"] == "Trip"
        assert seen["group"] is True
        assert len(seen["members"]) == 3
        assert me in _accts(seen)
    bobs = await _chat_on(bob, uri)
    carols = await _chat_on(carol, uri)
    hello = (await alice.post(f"/api/kith/v1/chats/{made.body['id']}/messages", status="hi")).body
    for client, chat in ((bob, bobs), (carol, carols)):
        path = f"/api/kith/v1/chats/{chat['id']}"
        seen = await _until(client, path, lambda body: body["unread_count"] == 1)
        assert seen["last_message"]["content"].endswith("hi</p>")
        conversations = (await client.get("/api/v1/conversations")).body
        assert conversations[0]["last_status"]["uri"] == hello["uri"]
    # A reply from another node reaches everyone, in the same chat.
    reply = await bob.post(f"/api/kith/v1/chats/{bobs['id']}/messages", status="hello all")
    assert reply.status == 200, reply.body
    for client, chat_id in ((alice, made.body["id"]), (carol, carols["id"])):
        await _until(
            client,
            f"/api/kith/v1/chats/{chat_id}/messages",
            lambda body: [m["uri"] for m in body][:1] == [reply.body["uri"]],
        )
    # The owner renames it and adds dave; dave sees only what comes after.
    await alice.request("PATCH", f"/api/kith/v1/chats/{made.body['id']}", json={"name": "Trip!"})
    await _until(bob, f"/api/kith/v1/chats/{bobs['id']}", lambda body: body["name"] == "Trip!")
    added = await alice.post(
        f"/api/kith/v1/chats/{made.body['id']}/members", acct=[f"dave@{c.domain}"]
    )
    assert added.status == 200, added.body
    daves = await _chat_on(dave, uri)
    await _until(bob, f"/api/kith/v1/chats/{bobs['id']}", lambda body: len(body["members"]) == 4)
    welcome = await bob.post(f"/api/kith/v1/chats/{bobs['id']}/messages", status="welcome dave")
    messages = await _until(
        dave, f"/api/kith/v1/chats/{daves['id']}/messages", lambda body: len(body) >= 1
    )
    assert [m["uri"] for m in messages] == [welcome.body["uri"]]
    # Carol leaves: the others see her go, and she gets nothing more.
    assert (await carol.post(f"/api/kith/v1/chats/{carols['id']}/leave")).body["left"] is True
    await _until(
        alice,
        f"/api/kith/v1/chats/{made.body['id']}",
        lambda body: f"carol@{c.domain}" not in _accts(body),
    )
    after = await alice.post(f"/api/kith/v1/chats/{made.body['id']}/messages", status="bye carol")
    assert f"carol@{c.domain}" not in [m["acct"] for m in after.body["mentions"]]
    await _until(
        dave,
        f"/api/kith/v1/chats/{daves['id']}/messages",
        lambda body: body[0]["uri"] == after.body["uri"],
    )
    assert after.body["uri"] not in [
        m["uri"] for m in (await carol.get(f"/api/kith/v1/chats/{carols['id']}/messages")).body
    ]
    # Nobody outside the chat, on any node, sees any of it.
    for eve in outsiders:
        assert (await eve.get("/api/kith/v1/chats")).body == []
        assert (await eve.get("/api/v1/conversations")).body == []
        found = (await eve.get("/api/v2/search", q=hello["uri"], resolve="true")).body
        assert found["statuses"] == []


async def test_read_receipts_cross_nodes_only_when_both_share_them(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, _ = trio
    alice = await client_for(a, "alice")
    bob = await client_for(b, "bob")
    made = (await alice.post("/api/kith/v1/chats", acct=[f"bob@{b.domain}"], name="Us")).body
    bobs = await _chat_on(bob, made["uri"])
    sent = (await alice.post(f"/api/kith/v1/chats/{made['id']}/messages", status="read?")).body
    path = f"/api/kith/v1/chats/{bobs['id']}"
    await _until(bob, path, lambda body: body["unread_count"] == 1)
    await alice.request("PATCH", "/api/kith/v1/preferences", json={"read_receipts": True})

    def bobs_marker(body: dict[str, Any]) -> str | None:
        bob_member = next(m for m in body["members"] if m["account"]["username"] == "bob")
        return bob_member["last_read_id"]

    # Bob does not share his: reading sends nothing.
    await bob.post(f"{path}/read")
    assert await _read_receipts_sent(b) == 0
    assert bobs_marker((await alice.get(f"/api/kith/v1/chats/{made['id']}")).body) is None
    # Once he shares them, his next read reaches alice's node.
    await bob.request("PATCH", "/api/kith/v1/preferences", json={"read_receipts": True})
    second = (await alice.post(f"/api/kith/v1/chats/{made['id']}/messages", status="now?")).body
    await _until(bob, path, lambda body: body["unread_count"] == 1)
    await bob.post(f"{path}/read")
    await _until(
        alice,
        f"/api/kith/v1/chats/{made['id']}",
        lambda body: bobs_marker(body) == second["id"],
    )
    assert sent["id"] < second["id"]
    assert await _read_receipts_sent(b) == 1


async def _read_receipts_sent(node: Node) -> int:
    async with node.db.read() as conn:
        bodies = (await conn.execute(select(deliveries.c.body))).scalars().all()
    return sum(json.loads(body)["type"] == "Read" for body in bodies)


async def test_pictures_deletions_blocks_and_live_events_in_a_three_node_group(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, c = trio
    alice = await client_for(a, "alice")
    bob = await client_for(b, "bob")
    carol = await client_for(c, "carol")
    made = (
        await alice.post(
            "/api/kith/v1/chats", acct=[f"bob@{b.domain}", f"carol@{c.domain}"], name="Pics"
        )
    ).body
    chats = {"alice": made["id"]}
    for name, client in (("bob", bob), ("carol", carol)):
        chats[name] = (await _chat_on(client, made["uri"]))["id"]
    async with (
        _direct_stream(b, bob) as bob_stream,
        _direct_stream(c, carol) as carol_stream,
    ):
        await asyncio.sleep(0.1)  # subscribed before anything is sent
        media = (await upload(alice, picture("PNG"), description="a red and blue square")).body
        sent = await alice.post(
            f"/api/kith/v1/chats/{chats['alice']}/messages", status="look", media_ids=[media["id"]]
        )
        assert sent.status == 200, sent.body
        # Every member's client hears it live, with its picture, from its own node.
        for stream in (bob_stream, carol_stream):
            heard = await _chat_event(stream, lambda chat: chat["last_message"] is not None)
            assert heard["last_message"]["uri"] == sent.body["uri"]
            assert len(heard["last_message"]["media_attachments"]) == 1
        # A deletion takes it out of every member's chat and Mastodon conversations.
        await alice.delete(f"/api/v1/statuses/{sent.body['id']}")
        for stream in (bob_stream, carol_stream):
            await _chat_event(stream, lambda chat: chat["last_message"] is None)
        for name, client in (("bob", bob), ("carol", carol)):
            messages = (await client.get(f"/api/kith/v1/chats/{chats[name]}/messages")).body
            assert messages == []
            assert (await client.get("/api/v1/conversations")).body == []
    # Carol blocks bob: his messages to the group reach alice, not carol.
    bob_on_c = (await carol.get("/api/v1/accounts/lookup", acct=f"bob@{b.domain}")).body
    assert (await carol.post(f"/api/v1/accounts/{bob_on_c['id']}/block")).status == 200
    from_bob = (await bob.post(f"/api/kith/v1/chats/{chats['bob']}/messages", status="hey")).body
    await _until(
        alice,
        f"/api/kith/v1/chats/{chats['alice']}/messages",
        lambda body: [m["uri"] for m in body][:1] == [from_bob["uri"]],
    )
    marker = (await alice.post(f"/api/kith/v1/chats/{chats['alice']}/messages", status="ok")).body
    seen = await _until(
        carol,
        f"/api/kith/v1/chats/{chats['carol']}/messages",
        lambda body: [m["uri"] for m in body][:1] == [marker["uri"]],
    )
    assert from_bob["uri"] not in [m["uri"] for m in seen]


def _direct_stream(node: Node, client: ApiClient) -> Any:
    return node.http.ws_connect(
        node.url("/api/v1/streaming?stream=direct"),
        headers={"Authorization": f"Bearer {client.token}"},
    )


async def _chat_event(socket: Any, check: Any) -> dict[str, Any]:
    """The next `kith:chat` event whose chat passes `check`."""
    while True:
        message = await asyncio.wait_for(socket.receive(), 10.0)
        event = json.loads(message.data)
        if event["event"] == "kith:chat" and check(chat := json.loads(event["payload"])):
            return chat
