"""Notifications: listing by type and sender, paging, get, dismiss, clear, the unread count."""

from __future__ import annotations

from tests.api.client import ApiClient, admin_client_for, client_for
from tests.harness import Node
from tests.integration.support import session_cookie


async def _id(node: Node, username: str) -> str:
    return str((await node.account(username)).id)


async def test_notifications_list_filter_get_dismiss_and_clear(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    alice_id = await _id(node, "alice")
    posted = (await alice.post("/api/v1/statuses", status="notice me")).body["id"]
    await bob.post(f"/api/v1/accounts/{alice_id}/follow")
    await bob.post(f"/api/v1/statuses/{posted}/favourite")
    await bob.post("/api/v1/statuses", status="hey @alice")
    listed = (await alice.get("/api/v1/notifications")).body
    assert [n["type"] for n in listed] == ["mention", "favourite", "follow"]
    assert listed[1]["status"]["id"] == posted
    assert "status" not in listed[2]
    assert listed[0]["account"]["username"] == "bob"
    assert listed[0]["group_key"] == f"ungrouped-{listed[0]['id']}"
    assert listed[0]["created_at"].endswith("Z")
    only = await alice.get("/api/v1/notifications", **{"types[]": "favourite"})
    assert [n["type"] for n in only.body] == ["favourite"]
    several = await alice.get("/api/v1/notifications", **{"types[]": ["favourite", "follow"]})
    assert [n["type"] for n in several.body] == ["favourite", "follow"]
    without = await alice.get("/api/v1/notifications", **{"exclude_types[]": "mention"})
    assert [n["type"] for n in without.body] == ["favourite", "follow"]
    # As Mastodon: names it does not know match nothing (newer clients send newer types).
    unknown = await alice.get("/api/v1/notifications", **{"types[]": "severed_relationships"})
    assert (unknown.status, unknown.body) == (200, [])
    one = await alice.get(f"/api/v1/notifications/{listed[0]['id']}")
    assert one.body == listed[0]
    assert (await bob.get(f"/api/v1/notifications/{listed[0]['id']}")).status == 404
    assert (await alice.post(f"/api/v1/notifications/{listed[0]['id']}/dismiss")).status == 200
    assert (await alice.post(f"/api/v1/notifications/{listed[0]['id']}/dismiss")).status == 404
    assert len((await alice.get("/api/v1/notifications")).body) == 2
    assert (await alice.get("/api/v1/notifications/unread_count")).body == {"count": 2}
    assert (await alice.post("/api/v1/notifications/clear")).body == {}
    assert (await alice.get("/api/v1/notifications")).body == []


async def test_notifications_from_one_account_and_follow_requests(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    carol = await client_for(node, "carol")
    await alice.request("PATCH", "/api/v1/accounts/update_credentials", json={"locked": True})
    alice_id = await _id(node, "alice")
    await bob.post(f"/api/v1/accounts/{alice_id}/follow")
    await carol.post("/api/v1/statuses", status="@alice hello")
    listed = (await alice.get("/api/v1/notifications")).body
    assert [n["type"] for n in listed] == ["mention", "follow_request"]
    from_bob = await alice.get("/api/v1/notifications", account_id=await _id(node, "bob"))
    assert [n["type"] for n in from_bob.body] == ["follow_request"]
    assert (await alice.get("/api/v1/notifications", account_id="carol")).status == 422


async def test_notifications_page_with_link_headers(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    for n in range(5):
        await bob.post("/api/v1/statuses", status=f"@alice number {n}")
    everything = (await alice.get("/api/v1/notifications")).body
    ids = [n["id"] for n in everything]
    assert len(ids) == 5
    first = await alice.get("/api/v1/notifications", limit=2)
    assert [n["id"] for n in first.body] == ids[:2]
    link = first.headers["Link"]
    assert f"max_id={ids[1]}" in link
    assert 'rel="next"' in link
    assert f"min_id={ids[0]}" in link
    assert 'rel="prev"' in link
    second = await alice.get("/api/v1/notifications", limit=2, max_id=ids[1])
    assert [n["id"] for n in second.body] == ids[2:4]
    newer = await alice.get("/api/v1/notifications", limit=2, min_id=ids[4])
    assert [n["id"] for n in newer.body] == ids[2:4]
    since = await alice.get("/api/v1/notifications", limit=2, since_id=ids[4])
    assert [n["id"] for n in since.body] == ids[:2]
    assert (await alice.get("/api/v1/notifications", limit="many")).status == 422
    assert (await alice.get("/api/v1/notifications", max_id="-1")).status == 422


async def test_blocked_and_muted_senders_are_hidden(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    carol = await client_for(node, "carol")
    dave = await client_for(node, "dave")
    for sender in (bob, carol, dave):
        await sender.post("/api/v1/statuses", status="@alice look")
    assert len((await alice.get("/api/v1/notifications")).body) == 3
    await alice.post(f"/api/v1/accounts/{await _id(node, 'bob')}/block")
    await alice.post(f"/api/v1/accounts/{await _id(node, 'carol')}/mute", notifications=True)
    await alice.post(f"/api/v1/accounts/{await _id(node, 'dave')}/mute", notifications=False)
    shown = (await alice.get("/api/v1/notifications")).body
    assert [n["account"]["username"] for n in shown] == ["dave"]
    assert (await alice.get("/api/v1/notifications/unread_count")).body == {"count": 1}


async def test_unread_count_follows_the_notifications_marker(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    mine = (await alice.post("/api/v1/statuses", status="count these")).body["id"]
    for n in range(3):
        await bob.post("/api/v1/statuses", status=f"@alice ping {n}")
    await bob.post(f"/api/v1/statuses/{mine}/favourite")
    listed = (await alice.get("/api/v1/notifications")).body
    assert (await alice.get("/api/v1/notifications/unread_count")).body == {"count": 4}
    await alice.post("/api/v1/markers", notifications={"last_read_id": listed[2]["id"]})
    assert (await alice.get("/api/v1/notifications/unread_count")).body == {"count": 2}
    limited = await alice.get("/api/v1/notifications/unread_count", limit=1)
    assert limited.body == {"count": 1}
    mentions = await alice.get("/api/v1/notifications/unread_count", **{"types[]": "mention"})
    assert mentions.body == {"count": 1}
    assert (await alice.get("/api/v1/notifications/unread_count", limit="x")).status == 422


async def test_notifications_need_a_token_with_the_right_scope(node: Node) -> None:
    await client_for(node, "alice")
    bob = await client_for(node, "bob")
    await bob.post("/api/v1/statuses", status="@alice hi")
    reader = ApiClient(node, await node.create_token("alice", "read:notifications"))
    listed = (await reader.get("/api/v1/notifications")).body
    assert len(listed) == 1
    anonymous = ApiClient(node, None)
    statuses_only = ApiClient(node, await node.create_token("alice", "read:statuses write"))
    for path in (
        "/api/v1/notifications",
        "/api/v1/notifications/unread_count",
        f"/api/v1/notifications/{listed[0]['id']}",
    ):
        assert (await anonymous.get(path)).status == 401
        assert (await statuses_only.get(path)).status == 403
    for path in ("/api/v1/notifications/clear", f"/api/v1/notifications/{listed[0]['id']}/dismiss"):
        assert (await anonymous.post(path)).status == 401
        assert (await reader.post(path)).status == 403
    assert (await reader.get("/api/v1/notifications/12345")).status == 404
    assert (await reader.get("/api/v1/notifications/not-a-number")).status == 404
    writer = ApiClient(node, await node.create_token("alice", "write:notifications"))
    assert (await writer.post("/api/v1/notifications/99999999999999999999/dismiss")).status == 404


async def _web_page(node: Node, username: str, path: str) -> str:
    """A page of the web client as `username` sees it (signed in)."""
    cookie = await session_cookie(node, username)
    async with node.http.get(path, headers=cookie, allow_redirects=False) as response:
        assert response.status == 200
        return await response.text()


async def test_silenced_strangers_blocked_and_muted_senders_are_hidden_on_the_api_and_the_web(
    node: Node,
) -> None:
    alice = await client_for(node, "alice")
    root = await admin_client_for(node)
    senders = {name: await client_for(node, name) for name in ("bob", "carol", "dave", "erin")}
    for name, sender in senders.items():
        await sender.post("/api/v1/statuses", status=f"@alice hello from {name}")
    for name in ("bob", "carol"):  # both silenced; alice follows carol
        silenced = await root.post(
            f"/api/v1/admin/accounts/{await _id(node, name)}/action", type="silence"
        )
        assert silenced.status == 200, silenced.body
    await alice.post(f"/api/v1/accounts/{await _id(node, 'carol')}/follow")
    await alice.post(f"/api/v1/accounts/{await _id(node, 'dave')}/block")

    shown = (await alice.get("/api/v1/notifications")).body
    assert sorted(n["account"]["username"] for n in shown) == ["carol", "erin"]
    assert (await alice.get("/api/v1/notifications/unread_count")).body == {"count": 2}
    page = await _web_page(node, "alice", "/notifications")
    assert "hello from carol" in page
    assert "hello from erin" in page
    assert "hello from bob" not in page
    assert "hello from dave" not in page

    lifted = await root.post(f"/api/v1/admin/accounts/{await _id(node, 'bob')}/unsilence")
    assert lifted.status == 200
    shown = (await alice.get("/api/v1/notifications")).body
    assert sorted(n["account"]["username"] for n in shown) == ["bob", "carol", "erin"]
