"""Notifications, direct-message conversations (across nodes) and read markers."""

from __future__ import annotations

from tests.api.client import ApiClient, client_for
from tests.harness import Node, NodeFactory, eventually


async def test_notifications_list_filter_get_dismiss_and_clear(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    alice_id = str((await node.account("alice")).id)
    posted = (await alice.post("/api/v1/statuses", status="notice me")).body["id"]
    await bob.post(f"/api/v1/accounts/{alice_id}/follow")
    await bob.post(f"/api/v1/statuses/{posted}/favourite")
    await bob.post("/api/v1/statuses", status="hey @alice")
    listed = (await alice.get("/api/v1/notifications")).body
    assert [n["type"] for n in listed] == ["mention", "favourite", "follow"]
    assert listed[1]["status"]["id"] == posted
    assert listed[0]["account"]["username"] == "bob"
    only = await alice.get("/api/v1/notifications", **{"types[]": "favourite"})
    assert [n["type"] for n in only.body] == ["favourite"]
    without = await alice.get("/api/v1/notifications", **{"exclude_types[]": "mention"})
    assert [n["type"] for n in without.body] == ["favourite", "follow"]
    assert (await alice.get("/api/v1/notifications", **{"types[]": "nonsense"})).status == 422
    one = await alice.get(f"/api/v1/notifications/{listed[0]['id']}")
    assert one.body["id"] == listed[0]["id"]
    assert (await bob.get(f"/api/v1/notifications/{listed[0]['id']}")).status == 404
    assert (await alice.post(f"/api/v1/notifications/{listed[0]['id']}/dismiss")).status == 200
    assert len((await alice.get("/api/v1/notifications")).body) == 2
    assert (await alice.get("/api/v1/notifications/unread_count")).body == {"count": 2}
    await alice.post("/api/v1/notifications/clear")
    assert (await alice.get("/api/v1/notifications")).body == []
    assert (await ApiClient(node, None).get("/api/v1/notifications")).status == 401


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
    mine = (await alice.get("/api/v1/conversations")).body
    assert mine[0]["unread"] is False
    assert [a["acct"] for a in mine[0]["accounts"]] == [f"bob@{there.domain}"]
    conversation_id = conversations[0]["id"]
    read = await bob.post(f"/api/v1/conversations/{conversation_id}/read")
    assert read.body["unread"] is False
    assert (await bob.request("DELETE", f"/api/v1/conversations/{conversation_id}")).status == 200
    assert (await bob.get("/api/v1/conversations")).body == []
    assert (await alice.post(f"/api/v1/conversations/{conversation_id}/read")).status == 404


async def test_markers_round_trip_with_versions(node: Node) -> None:
    alice = await client_for(node, "alice")
    saved = await alice.post("/api/v1/markers", home={"last_read_id": "105"})
    assert saved.body["home"]["last_read_id"] == "105"
    assert saved.body["home"]["version"] == 1
    again = await alice.request(
        "POST",
        "/api/v1/markers",
        data={"home[last_read_id]": "107", "notifications[last_read_id]": "9"},
    )
    assert again.body["home"]["version"] == 2
    both = await alice.get("/api/v1/markers", **{"timeline[]": ["home", "notifications"]})
    assert both.body["home"]["last_read_id"] == "107"
    assert both.body["notifications"]["last_read_id"] == "9"
    assert (await alice.post("/api/v1/markers")).status == 422
