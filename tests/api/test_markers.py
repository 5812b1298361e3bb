"""Read markers: saved per timeline with versions, read back for the timelines asked."""

from __future__ import annotations

from tests.api.client import ApiClient, client_for
from tests.harness import Node


async def test_markers_round_trip_with_versions(node: Node) -> None:
    alice = await client_for(node, "alice")
    assert (await alice.get("/api/v1/markers", **{"timeline[]": "home"})).body == {}
    saved = await alice.post("/api/v1/markers", home={"last_read_id": "105"})
    assert saved.body["home"]["last_read_id"] == "105"
    assert saved.body["home"]["version"] == 1
    assert saved.body["home"]["updated_at"].endswith("Z")
    assert "notifications" not in saved.body
    again = await alice.request(
        "POST",
        "/api/v1/markers",
        data={"home[last_read_id]": "107", "notifications[last_read_id]": "9"},
    )
    assert again.body["home"]["version"] == 2
    assert again.body["notifications"] == {**again.body["notifications"], "version": 1}
    both = await alice.get("/api/v1/markers", **{"timeline[]": ["home", "notifications"]})
    assert both.body["home"]["last_read_id"] == "107"
    assert both.body["notifications"]["last_read_id"] == "9"
    one = await alice.get("/api/v1/markers", **{"timeline[]": ["notifications", "unknown"]})
    assert list(one.body) == ["notifications"]
    assert (await alice.get("/api/v1/markers")).body == {}
    bob = await client_for(node, "bob")
    assert (await bob.get("/api/v1/markers", **{"timeline[]": "home"})).body == {}


async def test_bad_markers_are_refused(node: Node) -> None:
    alice = await client_for(node, "alice")
    assert (await alice.post("/api/v1/markers")).status == 422
    assert (await alice.post("/api/v1/markers", home={"last_read_id": "abc"})).status == 422
    assert (await alice.post("/api/v1/markers", home={"last_read_id": ""})).status == 422
    assert (await alice.post("/api/v1/markers", other={"last_read_id": "1"})).status == 422
    assert (await alice.post("/api/v1/markers", home="5")).status == 422
    assert (await alice.get("/api/v1/markers", **{"timeline[]": ["home"] * 11})).status == 422


async def test_markers_need_a_token_with_the_right_scope(node: Node) -> None:
    await client_for(node, "alice")
    anonymous = ApiClient(node, None)
    assert (await anonymous.get("/api/v1/markers")).status == 401
    assert (await anonymous.post("/api/v1/markers", home={"last_read_id": "1"})).status == 401
    reader = ApiClient(node, await node.create_token("alice", "read:statuses"))
    assert (await reader.get("/api/v1/markers", **{"timeline[]": "home"})).status == 200
    assert (await reader.post("/api/v1/markers", home={"last_read_id": "1"})).status == 403
    notifications_only = ApiClient(node, await node.create_token("alice", "read:notifications"))
    assert (await notifications_only.get("/api/v1/markers")).status == 403
    writer = ApiClient(node, await node.create_token("alice", "write:statuses"))
    assert (await writer.post("/api/v1/markers", home={"last_read_id": "1"})).status == 200
