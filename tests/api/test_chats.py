"""The Kith chats API on one node: groups, members, names, messages, unread counts, markers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.api.client import ApiClient, client_for
from tests.harness import Node


async def _ids(client: ApiClient, *names: str) -> list[str]:
    return [(await client.get("/api/v1/accounts/lookup", acct=name)).body["id"] for name in names]


async def _group(owner: ApiClient, *names: str, name: str | None = "Lunch") -> dict[str, Any]:
    fields: dict[str, Any] = {"account_ids": await _ids(owner, *names)}
    if name is not None:
        fields["name"] = name
    answer = await owner.post("/api/kith/v1/chats", **fields)
    assert answer.status == 200, answer.body
    return answer.body


def _usernames(chat: dict[str, Any]) -> list[str]:
    return sorted(m["account"]["username"] for m in chat["members"])


async def test_a_group_chat_is_made_with_its_members_name_and_owner(node: Node) -> None:
    alice = await client_for(node, "alice")
    for name in ("bob", "carol"):
        await client_for(node, name)
    chat = await _group(alice, "bob", "carol")
    assert chat["name"] == "Lunch"
    assert chat["group"] is True
    assert _usernames(chat) == ["alice", "bob", "carol"]
    assert chat["owner_id"] == (await _ids(alice, "alice"))[0]
    assert chat["unread_count"] == 0
    assert chat["last_message"] is None
    listed = (await alice.get("/api/kith/v1/chats")).body
    assert [c["id"] for c in listed] == [chat["id"]]


async def test_one_person_and_no_name_gives_the_same_one_to_one_chat(node: Node) -> None:
    alice = await client_for(node, "alice")
    await client_for(node, "bob")
    first = await _group(alice, "bob", name=None)
    again = await _group(alice, "bob", name=None)
    assert first["id"] == again["id"]
    assert first["group"] is False


async def test_messages_reach_every_member_with_unread_counts_and_read_markers(
    node: Node,
) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    carol = await client_for(node, "carol")
    chat = await _group(alice, "bob", "carol")
    path = f"/api/kith/v1/chats/{chat['id']}"
    sent = [(await alice.post(f"{path}/messages", status=f"hello {n}")).body for n in range(3)]
    assert all(s["visibility"] == "direct" for s in sent)
    assert sorted(m["username"] for m in sent[0]["mentions"]) == ["bob", "carol"]
    for reader in (bob, carol):
        seen = (await reader.get(path)).body
        assert seen["unread_count"] == 3
        assert seen["last_message"]["id"] == sent[-1]["id"]
        messages = (await reader.get(f"{path}/messages")).body
        assert [m["id"] for m in messages] == [s["id"] for s in reversed(sent)]
    assert (await alice.get(path)).body["unread_count"] == 0
    read = (await bob.post(f"{path}/read", last_read_id=sent[1]["id"])).body
    assert read["unread_count"] == 1
    assert read["last_read_id"] == sent[1]["id"]
    # The marker never moves back.
    again = (await bob.post(f"{path}/read", last_read_id=sent[0]["id"])).body
    assert again["last_read_id"] == sent[1]["id"]
    assert (await bob.post(f"{path}/read")).body["unread_count"] == 0
    # Mastodon's conversations agree.
    thread = (await bob.get("/api/v1/conversations")).body[0]
    assert thread["unread"] is False
    assert thread["last_status"]["id"] == sent[-1]["id"]
    # Paging, as Mastodon's timelines.
    page = await carol.get(f"{path}/messages", limit=2)
    assert [m["id"] for m in page.body] == [sent[2]["id"], sent[1]["id"]]
    assert 'rel="next"' in page.headers["Link"]


async def test_read_receipts_show_only_when_both_members_share_them(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    chat = await _group(alice, "bob", name=None)
    path = f"/api/kith/v1/chats/{chat['id']}"
    sent = (await alice.post(f"{path}/messages", status="seen?")).body
    await bob.post(f"{path}/read")

    def bobs_marker(body: dict[str, Any]) -> str | None:
        return next(m for m in body["members"] if m["account"]["username"] == "bob")["last_read_id"]

    assert bobs_marker((await alice.get(path)).body) is None
    shared = await alice.request("PATCH", "/api/kith/v1/preferences", json={"read_receipts": True})
    assert shared.body == {"read_receipts": True}
    assert bobs_marker((await alice.get(path)).body) is None  # bob does not share his
    await bob.request("PATCH", "/api/kith/v1/preferences", json={"read_receipts": True})
    assert bobs_marker((await alice.get(path)).body) == sent["id"]


async def test_the_owner_adds_renames_and_removes_and_members_leave(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    carol = await client_for(node, "carol")
    dave = await client_for(node, "dave")
    chat = await _group(alice, "bob")
    path = f"/api/kith/v1/chats/{chat['id']}"
    before = (await alice.post(f"{path}/messages", status="before carol")).body
    added = await alice.post(f"{path}/members", account_ids=await _ids(alice, "carol", "dave"))
    assert _usernames(added.body) == ["alice", "bob", "carol", "dave"]
    after = (await alice.post(f"{path}/messages", status="after carol")).body
    # A new member sees the messages from then on, not before.
    assert [m["id"] for m in (await carol.get(f"{path}/messages")).body] == [after["id"]]
    assert (await carol.get(f"/api/v1/statuses/{before['id']}")).status == 404
    renamed = await alice.request("PATCH", path, json={"name": "Dinner"})
    assert renamed.body["name"] == "Dinner"
    # Only the owner renames and removes.
    assert (await bob.request("PATCH", path, json={"name": "Mine"})).status == 403
    dave_id = (await _ids(alice, "dave"))[0]
    assert (await bob.delete(f"{path}/members/{dave_id}")).status == 403
    removed = await alice.delete(f"{path}/members/{dave_id}")
    assert _usernames(removed.body) == ["alice", "bob", "carol"]
    left = await carol.post(f"{path}/leave")
    assert left.body["left"] is True
    last = (await alice.post(f"{path}/messages", status="without them")).body
    assert sorted(m["username"] for m in last["mentions"]) == ["bob"]
    # Those who left keep what they saw, and see nothing new.
    for gone in (carol, dave):
        seen = [m["id"] for m in (await gone.get(f"{path}/messages")).body]
        assert last["id"] not in seen
        assert (await gone.post(f"{path}/messages", status="hi?")).status == 403
    assert (await bob.get(path)).body["name"] == "Dinner"


async def test_an_owner_who_leaves_hands_the_group_to_the_longest_standing_member(
    node: Node,
) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    await client_for(node, "carol")
    chat = await _group(alice, "bob", "carol")
    path = f"/api/kith/v1/chats/{chat['id']}"
    await alice.post(f"{path}/leave")
    seen = (await bob.get(path)).body
    assert seen["owner_id"] == (await _ids(bob, "bob"))[0]
    assert (await bob.request("PATCH", path, json={"name": "Bob's"})).status == 200


async def test_a_member_who_blocks_another_stops_receiving_from_them(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    carol = await client_for(node, "carol")
    chat = await _group(alice, "bob", "carol")
    path = f"/api/kith/v1/chats/{chat['id']}"
    carol_id = (await _ids(bob, "carol"))[0]
    assert (await bob.post(f"/api/v1/accounts/{carol_id}/block")).status == 200
    sent = (await carol.post(f"{path}/messages", status="can bob hear me")).body
    assert sorted(m["username"] for m in sent["mentions"]) == ["alice"]
    assert sent["id"] not in [m["id"] for m in (await bob.get(f"{path}/messages")).body]
    assert (await bob.get(path)).body["unread_count"] == 0


async def test_people_outside_a_chat_learn_nothing_of_it(node: Node) -> None:
    alice = await client_for(node, "alice")
    await client_for(node, "bob")
    eve = await client_for(node, "eve")
    chat = await _group(alice, "bob")
    path = f"/api/kith/v1/chats/{chat['id']}"
    message = (await alice.post(f"{path}/messages", status="secret")).body
    for answer in (
        await eve.get(path),
        await eve.get(f"{path}/messages"),
        await eve.post(f"{path}/messages", status="let me in"),
        await eve.post(f"{path}/read"),
        await eve.post(f"{path}/leave"),
        await eve.get(f"/api/v1/statuses/{message['id']}"),
    ):
        assert answer.status == 404, answer.body
    assert (await eve.get("/api/kith/v1/chats")).body == []


async def test_bad_requests_get_a_clear_error_and_change_nothing(node: Node) -> None:
    alice = await client_for(node, "alice")
    await client_for(node, "bob")
    chat = await _group(alice, "bob")
    path = f"/api/kith/v1/chats/{chat['id']}"
    for answer in (
        await alice.post("/api/kith/v1/chats"),
        await alice.post("/api/kith/v1/chats", account_ids=["999"]),
        await alice.post("/api/kith/v1/chats", account_ids=await _ids(alice, "alice")),
        await alice.post(
            "/api/kith/v1/chats", account_ids=await _ids(alice, "bob"), name="x" * 101
        ),
        await alice.post(f"{path}/messages", status="   "),
        await alice.post(f"{path}/members", account_ids=await _ids(alice, "bob")),
        await alice.post(f"{path}/read", last_read_id="12345"),
        await alice.post(f"{path}/messages", status="re", in_reply_to_id="12345"),
    ):
        assert answer.status == 422, answer.body
        assert "error" in answer.body
    assert len((await alice.get("/api/kith/v1/chats")).body) == 1
    assert (await alice.get(f"{path}/messages")).body == []


async def test_members_hear_of_messages_and_reads_on_the_direct_stream(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    chat = await _group(alice, "bob", name=None)
    path = f"/api/kith/v1/chats/{chat['id']}"
    async with node.http.ws_connect(
        node.url("/api/v1/streaming?stream=direct"),
        headers={"Authorization": f"Bearer {bob.token}"},
    ) as socket:
        await asyncio.sleep(0.05)  # subscribed before anything is sent
        sent = (await alice.post(f"{path}/messages", status="are you there")).body
        heard = {e["event"]: e for e in [await _next(socket), await _next(socket)]}
        assert set(heard) == {"conversation", "kith:chat"}
        assert heard["kith:chat"]["stream"] == ["direct"]
        streamed = json.loads(heard["kith:chat"]["payload"])
        assert streamed["id"] == chat["id"]
        assert streamed["unread_count"] == 1
        assert streamed["last_message"]["id"] == sent["id"]
        assert json.loads(heard["conversation"]["payload"])["last_status"]["id"] == sent["id"]
        await bob.post(f"{path}/read")
        read = await _next(socket)
        assert read["event"] == "kith:chat"
        assert json.loads(read["payload"])["unread_count"] == 0


async def _next(socket: Any) -> dict[str, Any]:
    message = await asyncio.wait_for(socket.receive(), 5.0)
    return json.loads(message.data)


async def test_edits_and_deletions_reach_the_members_streams(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    chat = await _group(alice, "bob", name=None)
    path = f"/api/kith/v1/chats/{chat['id']}"
    first = (await alice.post(f"{path}/messages", status="first")).body
    second = (await alice.post(f"{path}/messages", status="second")).body
    async with node.http.ws_connect(
        node.url("/api/v1/streaming?stream=direct"),
        headers={"Authorization": f"Bearer {bob.token}"},
    ) as socket:
        await asyncio.sleep(0.05)
        await alice.put(f"/api/v1/statuses/{second['id']}", status="second, edited")
        heard = {e["event"]: e for e in [await _next(socket), await _next(socket)]}
        assert "edited" in json.loads(heard["status.update"]["payload"])["content"]
        assert json.loads(heard["kith:chat"]["payload"])["id"] == chat["id"]
        await alice.delete(f"/api/v1/statuses/{second['id']}")
        heard = {e["event"]: e for e in [await _next(socket), await _next(socket)]}
        assert heard["delete"]["payload"] == second["id"]
        after = json.loads(heard["kith:chat"]["payload"])
        assert after["last_message"]["id"] == first["id"]


async def test_direct_messages_stay_out_of_every_home_timeline(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    alice_id, bob_id = await _ids(alice, "alice", "bob")
    await bob.post(f"/api/v1/accounts/{alice_id}/follow")
    await alice.post(f"/api/v1/accounts/{bob_id}/follow")
    chat = await _group(alice, "bob", name=None)
    await alice.post(f"/api/kith/v1/chats/{chat['id']}/messages", status="just us")
    await alice.post("/api/v1/statuses", status="@bob also just us", visibility="direct")
    for client in (alice, bob):
        assert (await client.get("/api/v1/timelines/home")).body == []
    assert len((await bob.get(f"/api/kith/v1/chats/{chat['id']}/messages")).body) == 1
