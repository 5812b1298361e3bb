"""Direct-message conversations: across nodes, read and removed, paged, after deletions."""

from __future__ import annotations

from tests.api.client import ApiClient, client_for
from tests.harness import Node, NodeFactory, eventually


async def test_a_direct_message_reaches_the_recipients_conversations_on_another_node(
    nodes: NodeFactory,
) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    bob = await client_for(there, "bob")
    sent = await alice.post(
        "/api/v1/statuses", status=f"@bob@{there.domain} psst", visibility="direct"
    )
    assert sent.status == 200

    async def arrived() -> list:
        return (await bob.get("/api/v1/conversations")).body

    conversations = await eventually(arrived)
    assert conversations[0]["unread"] is True
    assert [a["acct"] for a in conversations[0]["accounts"]] == [f"alice@{here.domain}"]
    assert conversations[0]["last_status"]["visibility"] == "direct"
    assert conversations[0]["last_status"]["uri"] == sent.body["uri"]
    mine = (await alice.get("/api/v1/conversations")).body
    assert mine[0]["unread"] is False
    assert [a["acct"] for a in mine[0]["accounts"]] == [f"bob@{there.domain}"]
    conversation_id = conversations[0]["id"]
    read = await bob.post(f"/api/v1/conversations/{conversation_id}/read")
    assert read.body["id"] == conversation_id
    assert read.body["unread"] is False
    assert (await bob.delete(f"/api/v1/conversations/{conversation_id}")).status == 200
    assert (await bob.get("/api/v1/conversations")).body == []
    assert (await alice.post(f"/api/v1/conversations/{conversation_id}/read")).status == 404


async def test_a_reply_moves_the_thread_and_marks_it_unread(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    first = (await alice.post("/api/v1/statuses", status="@bob hi", visibility="direct")).body
    thread = (await bob.get("/api/v1/conversations")).body[0]
    await bob.post(f"/api/v1/conversations/{thread['id']}/read")
    reply = (
        await bob.post(
            "/api/v1/statuses",
            status="@alice hello",
            visibility="direct",
            in_reply_to_id=first["id"],
        )
    ).body
    for client, unread in ((alice, True), (bob, False)):
        listed = (await client.get("/api/v1/conversations")).body
        assert len(listed) == 1
        assert listed[0]["last_status"]["id"] == reply["id"]
        assert listed[0]["unread"] is unread
    # Deleting the last message moves the thread back; deleting the rest removes it.
    await bob.delete(f"/api/v1/statuses/{reply['id']}")
    listed = (await alice.get("/api/v1/conversations")).body
    assert [c["last_status"]["id"] for c in listed] == [first["id"]]
    await alice.delete(f"/api/v1/statuses/{first['id']}")
    assert (await alice.get("/api/v1/conversations")).body == []
    assert (await bob.get("/api/v1/conversations")).body == []


async def test_conversations_page_by_their_last_message(node: Node) -> None:
    alice = await client_for(node, "alice")
    for name in ("bob", "carol", "dave"):
        await client_for(node, name)
        await alice.post("/api/v1/statuses", status=f"@{name} just us", visibility="direct")
    everything = (await alice.get("/api/v1/conversations")).body
    assert [c["accounts"][0]["username"] for c in everything] == ["dave", "carol", "bob"]
    first = await alice.get("/api/v1/conversations", limit=2)
    assert [c["id"] for c in first.body] == [c["id"] for c in everything[:2]]
    last_status = everything[1]["last_status"]["id"]
    assert f"max_id={last_status}" in first.headers["Link"]
    rest = await alice.get("/api/v1/conversations", max_id=last_status)
    assert [c["id"] for c in rest.body] == [everything[2]["id"]]
    assert (await alice.get("/api/v1/conversations", limit="ten")).status == 422


async def test_conversations_check_tokens_scopes_and_owners(node: Node) -> None:
    alice = await client_for(node, "alice")
    await client_for(node, "bob")
    await alice.post("/api/v1/statuses", status="@bob secret", visibility="direct")
    conversation_id = (await alice.get("/api/v1/conversations")).body[0]["id"]
    anonymous = ApiClient(node, None)
    assert (await anonymous.get("/api/v1/conversations")).status == 401
    assert (await anonymous.post(f"/api/v1/conversations/{conversation_id}/read")).status == 401
    assert (await anonymous.delete(f"/api/v1/conversations/{conversation_id}")).status == 401
    notifications_only = ApiClient(node, await node.create_token("alice", "read:notifications"))
    assert (await notifications_only.get("/api/v1/conversations")).status == 403
    reader = ApiClient(node, await node.create_token("alice", "read:statuses"))
    assert (await reader.get("/api/v1/conversations")).status == 200
    assert (await reader.post(f"/api/v1/conversations/{conversation_id}/read")).status == 403
    assert (await reader.delete(f"/api/v1/conversations/{conversation_id}")).status == 403
    writer = ApiClient(node, await node.create_token("alice", "write:conversations"))
    assert (await writer.post("/api/v1/conversations/123/read")).status == 404
    assert (await writer.delete("/api/v1/conversations/nope")).status == 404
    carol = await client_for(node, "carol")
    assert (await carol.delete(f"/api/v1/conversations/{conversation_id}")).status == 404
    assert (await writer.post(f"/api/v1/conversations/{conversation_id}/read")).status == 200
