"""ActivityPub client-to-server: the outbox and inbox driven over HTTP with a bearer token."""

from __future__ import annotations

from typing import Any

from tests.api.client import ApiClient, client_for
from tests.federation.social import stored
from tests.harness import Node, NodeFactory, eventually

AS2 = {"Content-Type": "application/activity+json"}
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


async def _outbox(client: ApiClient, username: str, document: dict[str, Any]) -> Any:
    return await client.request("POST", f"/users/{username}/outbox", json=document, headers=AS2)


async def test_a_bare_note_is_created_federated_and_answered_with_201(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    bob = await client_for(there, "bob")
    alice_actor = here.url("/users/alice")
    followed = await _outbox(bob, "bob", {"type": "Follow", "object": alice_actor})
    assert followed.status == 201, followed.body
    assert followed.headers["Location"] == followed.body["id"]

    async def following() -> bool:
        found = await bob.get("/api/v1/accounts/lookup", acct=f"alice@{here.domain}")
        relation = await bob.get("/api/v1/accounts/relationships", **{"id[]": found.body["id"]})
        return relation.body[0]["following"]

    await eventually(following)
    note = {
        "type": "Note",
        "content": "<p>hello <b>C2S</b><script>x()</script></p>",
        "to": [PUBLIC],
        "cc": [here.url("/users/alice/followers")],
        "summary": "cw",
    }
    created = await _outbox(alice, "alice", note)
    assert created.status == 201, created.body
    body = created.body
    assert body["type"] == "Create"
    assert body["actor"] == alice_actor
    assert created.headers["Location"] == body["id"]
    note_id = body["object"]["id"]
    assert body["object"]["summary"] == "cw"
    assert "script" not in body["object"]["content"]
    mastodon_view = await alice.get(f"/api/v1/statuses/{note_id.rsplit('/', 1)[1]}")
    assert mastodon_view.body["visibility"] == "public"
    assert "hello C2S" in mastodon_view.body["content"]

    async def delivered() -> bool:
        return await stored(there, note_id) is not None

    await eventually(delivered)

    liked = await _outbox(bob, "bob", {"type": "Like", "object": note_id})
    assert liked.status == 201, liked.body
    await eventually(lambda: _count(alice, mastodon_view.body["id"], "favourites_count", 1))
    undone = await _outbox(bob, "bob", {"type": "Undo", "object": liked.body["id"]})
    assert undone.status == 201, undone.body
    await eventually(lambda: _count(alice, mastodon_view.body["id"], "favourites_count", 0))

    deleted = await _outbox(alice, "alice", {"type": "Delete", "object": note_id})
    assert deleted.status == 201

    async def gone_there() -> bool:
        return await stored(there, note_id) is None

    await eventually(gone_there)


async def _count(client: ApiClient, status_id: str, field: str, expected: int) -> bool:
    return (await client.get(f"/api/v1/statuses/{status_id}")).body[field] == expected


async def test_the_outbox_refuses_strangers_bad_types_and_malformed_activities(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    note = {"type": "Note", "content": "hi", "to": [PUBLIC]}
    assert (await _outbox(bob, "alice", note)).status == 403
    assert (await _outbox(ApiClient(node, None), "alice", note)).status == 401
    reader = ApiClient(node, await node.create_token("alice", "read"))
    assert (await _outbox(reader, "alice", note)).status == 403
    wrong_type = await alice.request("POST", "/users/alice/outbox", json=note)
    assert wrong_type.status == 415
    for bad in (
        {"type": "Question"},
        {"type": "Note"},
        {"type": "Create", "object": "https://example.invalid/x"},
        {"type": "Like", "object": node.url("/objects/1")},
        {"type": "Note", "content": "hi", "attributedTo": node.url("/users/bob")},
        {"type": "Create", "actor": node.url("/users/bob"), "object": note},
        {"type": "Undo", "object": node.url("/activities/1")},
    ):
        answer = await _outbox(alice, "alice", bad)
        assert answer.status == 422, bad
        assert answer.body["error"]
    assert (await alice.get("/api/v1/timelines/home")).body == []


async def test_the_owner_reads_their_inbox_and_others_cannot(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    bob_id = str((await node.account("bob")).id)
    await alice.post(f"/api/v1/accounts/{bob_id}/follow")
    await bob.post("/api/v1/statuses", status="for my followers", visibility="private")
    root = await alice.request("GET", "/users/alice/inbox", headers={"Accept": AS2["Content-Type"]})
    assert root.status == 200
    assert root.body["type"] == "OrderedCollection"
    assert root.body["totalItems"] == 1
    page = await alice.request("GET", root.body["first"].removeprefix(node.base_url))
    items = page.body["orderedItems"]
    assert [i["type"] for i in items] == ["Create"]
    assert items[0]["object"]["content"] == "<p>for my followers</p>"
    assert (await bob.get("/users/alice/inbox")).status == 403
    assert (await ApiClient(node, None).get("/users/alice/inbox")).status == 401


async def test_the_actor_lists_client_endpoints(node: Node) -> None:
    await node.create_user("alice")
    actor = await ApiClient(node, None).request(
        "GET", "/users/alice", headers={"Accept": AS2["Content-Type"]}
    )
    endpoints = actor.body["endpoints"]
    assert endpoints["oauthTokenEndpoint"] == node.url("/oauth/token")
    assert endpoints["oauthAuthorizationEndpoint"] == node.url("/oauth/authorize")
    assert endpoints["proxyUrl"] == node.url("/api/kith/v1/proxy")


async def test_proxy_url_fetches_objects_for_the_client(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    bob = await client_for(there, "bob")
    posted = (await bob.post("/api/v1/statuses", status="fetch me")).body
    fetched = await alice.request("POST", "/api/kith/v1/proxy", data={"id": posted["uri"]})
    assert fetched.status == 200
    assert fetched.body["id"] == posted["uri"]
    assert (await alice.request("POST", "/api/kith/v1/proxy", data={"id": "ftp://x"})).status == 422
    assert (await ApiClient(here, None).request("POST", "/api/kith/v1/proxy")).status == 401
