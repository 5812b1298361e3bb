"""ActivityPub client-to-server: the outbox and inbox driven over HTTP with a bearer token."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from tests.api.client import Answer, ApiClient, client_for
from tests.federation.social import follow_state, remote, stored, visible_to
from tests.harness import Node, NodeFactory, eventually

AS2 = {"Content-Type": "application/activity+json"}
LD = {"Content-Type": 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'}
ACCEPT_AS2 = {"Accept": "application/activity+json"}
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


async def _outbox(
    client: ApiClient, username: str, document: Any, headers: dict[str, str] = AS2
) -> Answer:
    return await client.request("POST", f"/users/{username}/outbox", json=document, headers=headers)


def _status_id(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


async def _count(client: ApiClient, status_id: str, field: str, expected: int) -> bool:
    return (await client.get(f"/api/v1/statuses/{status_id}")).body[field] == expected


async def _following(client: ApiClient, handle: str) -> bool:
    found = await client.get("/api/v1/accounts/lookup", acct=handle)
    relation = await client.get("/api/v1/accounts/relationships", **{"id[]": found.body["id"]})
    return relation.body[0]["following"]


async def test_a_bare_note_is_created_federated_and_answered_with_201(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    bob = await client_for(there, "bob")
    alice_actor = here.url("/users/alice")
    followed = await _outbox(bob, "bob", {"type": "Follow", "object": alice_actor})
    assert followed.status == 201, followed.body
    assert followed.headers["Location"] == followed.body["id"]
    assert followed.body["actor"] == there.url("/users/bob")
    await eventually(lambda: _following(bob, here.handle("alice")))

    note = {
        "type": "Note",
        "content": "<p>hello <b>C2S</b><script>x()</script> #kith</p>",
        "to": [PUBLIC],
        "cc": [here.url("/users/alice/followers")],
        "summary": "cw",
        "contentMap": {"en": "ignored: content wins"},
    }
    created = await _outbox(alice, "alice", note, LD)
    assert created.status == 201, created.body
    body = created.body
    assert created.headers["Content-Type"].startswith("application/activity+json")
    assert body["type"] == "Create"
    assert body["actor"] == alice_actor
    assert created.headers["Location"] == body["id"]
    assert body["object"]["attributedTo"] == alice_actor
    assert body["object"]["summary"] == "cw"
    assert body["object"]["contentMap"].keys() == {"en"}
    assert "script" not in body["object"]["content"]
    assert "/tags/kith" in body["object"]["content"]  # hashtags linked as for any post
    note_id = body["object"]["id"]

    # The Location can be dereferenced, and the post is the one the Mastodon API shows.
    location = await ApiClient(here, None).request(
        "GET", body["id"].removeprefix(here.base_url), headers=ACCEPT_AS2
    )
    assert location.status == 200
    assert location.body["object"]["id"] == note_id
    mastodon_view = await alice.get(f"/api/v1/statuses/{_status_id(note_id)}")
    assert mastodon_view.body["visibility"] == "public"
    assert mastodon_view.body["spoiler_text"] == "cw"
    assert "hello C2S" in mastodon_view.body["content"]
    await eventually(lambda: stored(there, note_id))

    # Bob likes, boosts and undoes both from his own node's outbox; Alice's node sees it all.
    status_id = mastodon_view.body["id"]
    liked = await _outbox(bob, "bob", {"type": "Like", "object": note_id})
    assert liked.status == 201, liked.body
    await eventually(lambda: _count(alice, status_id, "favourites_count", 1))
    boosted = await _outbox(bob, "bob", {"type": "Announce", "object": note_id})
    assert boosted.status == 201, boosted.body
    assert boosted.body["object"] == note_id
    await eventually(lambda: _count(alice, status_id, "reblogs_count", 1))
    undone = await _outbox(bob, "bob", {"type": "Undo", "object": liked.body["id"]})
    assert undone.status == 201, undone.body
    assert undone.body["object"]["id"] == liked.body["id"]
    await eventually(lambda: _count(alice, status_id, "favourites_count", 0))
    # An embedded activity without its id names it by type and object.
    unboosted = await _outbox(
        bob, "bob", {"type": "Undo", "object": {"type": "Announce", "object": note_id}}
    )
    assert unboosted.status == 201, unboosted.body
    await eventually(lambda: _count(alice, status_id, "reblogs_count", 0))

    edited = await _outbox(
        alice,
        "alice",
        {"type": "Update", "object": {"id": note_id, "type": "Note", "content": "v2"}},
    )
    assert edited.status == 201, edited.body
    assert edited.body["type"] == "Update"
    assert "v2" in (await alice.get(f"/api/v1/statuses/{status_id}")).body["content"]

    async def edited_there() -> bool:
        found = await stored(there, note_id)
        return found is not None and "v2" in found.content

    await eventually(edited_there)
    deleted = await _outbox(alice, "alice", {"type": "Delete", "object": note_id})
    assert deleted.status == 201, deleted.body
    assert (await alice.get(f"/api/v1/statuses/{status_id}")).status == 404

    async def gone_there() -> bool:
        return await stored(there, note_id) is None

    await eventually(gone_there)


async def test_follow_undo_and_block_of_a_remote_actor_reach_its_node(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    await client_for(there, "bob")
    bob_actor = there.url("/users/bob")
    followed = await _outbox(alice, "alice", {"type": "Follow", "object": bob_actor})
    assert followed.status == 201, followed.body
    assert followed.body["object"] == bob_actor
    bob_here = await remote(here, bob_actor)
    assert bob_here is not None  # fetched and stored to be followed
    alice_local = await here.account("alice")
    await eventually(lambda: follow_state(here, alice_local, bob_here), "accepted".__eq__)
    bob_local = await there.account("bob")
    alice_there = await eventually(lambda: remote(there, here.url("/users/alice")))
    assert await follow_state(there, alice_there, bob_local) == "accepted"

    undone = await _outbox(
        alice, "alice", {"type": "Undo", "object": {"type": "Follow", "object": bob_actor}}
    )
    assert undone.status == 201, undone.body
    assert undone.body["object"]["id"] == followed.body["id"]
    await eventually(
        lambda: follow_state(there, alice_there, bob_local), lambda state: state is None
    )
    assert await follow_state(here, alice_local, bob_here) is None

    blocked = await _outbox(alice, "alice", {"type": "Block", "object": bob_actor})
    assert blocked.status == 201, blocked.body
    relation = await alice.get("/api/v1/accounts/relationships", **{"id[]": str(bob_here.id)})
    assert relation.body[0]["blocking"] is True
    unblocked = await _outbox(alice, "alice", {"type": "Undo", "object": blocked.body["id"]})
    assert unblocked.status == 201, unblocked.body
    relation = await alice.get("/api/v1/accounts/relationships", **{"id[]": str(bob_here.id)})
    assert relation.body[0]["blocking"] is False


async def test_a_note_addressed_to_a_remote_actor_is_a_direct_message(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    await client_for(there, "bob")
    await client_for(there, "carol")
    bob_actor = there.url("/users/bob")
    # No Mention tag: everyone addressed is mentioned, so this is Mastodon's "direct".
    created = await _outbox(alice, "alice", {"type": "Note", "content": "psst", "to": [bob_actor]})
    assert created.status == 201, created.body
    assert created.body["object"]["to"] == [bob_actor]
    assert created.body["object"]["tag"][0]["href"] == bob_actor
    note_id = created.body["object"]["id"]
    view = await alice.get(f"/api/v1/statuses/{_status_id(note_id)}")
    assert view.body["visibility"] == "direct"
    await eventually(lambda: visible_to(there, "bob", note_id))
    assert not await visible_to(there, "carol", note_id)


async def test_the_outbox_refuses_strangers_bad_types_and_malformed_activities(
    node: Node,
) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    secret = await bob.post("/api/v1/statuses", status="bob keeps this", visibility="private")
    note = {"type": "Note", "content": "hi", "to": [PUBLIC]}
    assert (await _outbox(bob, "alice", note)).status == 403
    assert (await _outbox(ApiClient(node, None), "alice", note)).status == 401
    reader = ApiClient(node, await node.create_token("alice", "read"))
    assert (await _outbox(reader, "alice", note)).status == 403
    assert (await alice.request("POST", "/users/alice/outbox", json=note)).status == 415
    not_json = await alice.request("POST", "/users/alice/outbox", data=b"{nope", headers=AS2)
    assert not_json.status == 400
    assert not_json.body["error"]
    huge = {**note, "content": "x" * (2 * 1024 * 1024)}
    assert (await _outbox(alice, "alice", huge)).status == 413
    unknown = await _outbox(alice, "alice", {"type": "Like", "object": node.url("/objects/1")})
    private = await _outbox(alice, "alice", {"type": "Like", "object": secret.body["uri"]})
    # Someone else's private post answers exactly as one that does not exist.
    assert unknown.status == private.status == 422
    assert unknown.body == private.body == {"error": "the object is unknown"}
    for bad in (
        ["not", "an", "object"],
        {"type": "Question"},
        {"type": "Note"},
        {"type": "Create", "object": "https://example.invalid/x"},
        {"type": "Note", "content": "hi", "attributedTo": node.url("/users/bob")},
        {"type": "Create", "actor": node.url("/users/bob"), "object": note},
        {**note, "bcc": [node.url("/users/bob")]},
        {**note, "attachment": [{"type": "Image", "url": "https://example.invalid/a.png"}]},
        {"type": "Note", "content": "hi", "to": [node.url("/users/bob/followers")]},
        {"type": "Undo", "object": node.url("/activities/1")},
        {"type": "Undo", "object": {"type": "Like", "object": secret.body["uri"]}},
        {"type": "Delete", "object": secret.body["uri"]},
        {"type": "Update", "object": {"id": secret.body["uri"], "type": "Note", "content": "x"}},
        {"type": "Follow", "object": node.url("/users/alice")},
        {"type": "Announce", "object": secret.body["uri"]},
    ):
        answer = await _outbox(alice, "alice", bad)
        assert answer.status in (400, 422), (bad, answer.status)
        assert answer.body["error"], bad
    # Nothing was applied: no post, no like, no follow.
    assert (await alice.get("/api/v1/timelines/home")).body == []
    assert (await alice.get("/api/v1/favourites")).body == []
    assert (await alice.get("/api/v1/accounts/verify_credentials")).body["statuses_count"] == 0
    kept = await bob.get(f"/api/v1/statuses/{secret.body['id']}")
    assert "bob keeps this" in kept.body["content"]


async def test_bodies_are_read_whole_and_capped_even_without_a_length(node: Node) -> None:
    alice = await client_for(node, "alice")
    padded = {"type": "Note", "content": "long body", "padding": "x" * 600_000}
    assert (await _outbox(alice, "alice", padded)).status == 201

    async def chunks(count: int) -> AsyncIterator[bytes]:
        yield b'{"type": "Note", "content": "hi", "padding": "'
        for _ in range(count):
            yield b"x" * 65536
        yield b'"}'

    streamed = await alice.request(
        "POST", "/users/alice/outbox", data=chunks(4), headers=AS2
    )  # chunked: no Content-Length
    assert streamed.status == 201, streamed.body
    too_long = await alice.request("POST", "/users/alice/outbox", data=chunks(40), headers=AS2)
    assert too_long.status == 413


async def test_the_owner_reads_their_inbox_and_others_cannot(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    bob_id = str((await node.account("bob")).id)
    await alice.post(f"/api/v1/accounts/{bob_id}/follow")
    await bob.post("/api/v1/statuses", status="for my followers", visibility="private")
    root = await alice.request("GET", "/users/alice/inbox", headers=ACCEPT_AS2)
    assert root.status == 200
    assert root.body["type"] == "OrderedCollection"
    assert root.body["totalItems"] == 1
    assert "Authorization" in root.headers["Vary"]
    page = await alice.request("GET", root.body["first"].removeprefix(node.base_url))
    items = page.body["orderedItems"]
    assert [i["type"] for i in items] == ["Create"]
    assert items[0]["object"]["content"] == "<p>for my followers</p>"
    assert (await bob.get("/users/alice/inbox")).status == 403
    assert (await ApiClient(node, None).get("/users/alice/inbox")).status == 401


async def test_the_owner_sees_every_post_in_the_outbox_others_the_public_ones(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    await alice.post("/api/v1/statuses", status="for everyone")
    await alice.post("/api/v1/statuses", status="for followers", visibility="private")

    async def contents(client: ApiClient) -> list[str]:
        page = await client.request("GET", "/users/alice/outbox?page=true", headers=ACCEPT_AS2)
        assert page.status == 200
        return [item["object"]["content"] for item in page.body["orderedItems"]]

    assert await contents(alice) == ["<p>for followers</p>", "<p>for everyone</p>"]
    assert await contents(bob) == ["<p>for everyone</p>"]
    assert await contents(ApiClient(node, None)) == ["<p>for everyone</p>"]
    root = await alice.request("GET", "/users/alice/outbox", headers=ACCEPT_AS2)
    assert root.body["totalItems"] == 2
    assert (await ApiClient(node, None).request("GET", "/users/alice/outbox")).body[
        "totalItems"
    ] == 1


async def test_the_actor_lists_client_endpoints(node: Node) -> None:
    await node.create_user("alice")
    actor = await ApiClient(node, None).request("GET", "/users/alice", headers=ACCEPT_AS2)
    endpoints = actor.body["endpoints"]
    assert endpoints["oauthTokenEndpoint"] == node.url("/oauth/token")
    assert endpoints["oauthAuthorizationEndpoint"] == node.url("/oauth/authorize")
    assert endpoints["proxyUrl"] == node.url("/api/kith/v1/proxy")
    instance = await ApiClient(node, None).request("GET", "/actor", headers=ACCEPT_AS2)
    assert "proxyUrl" not in instance.body["endpoints"]


async def test_proxy_url_fetches_objects_for_the_client(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    bob = await client_for(there, "bob")
    posted = (await bob.post("/api/v1/statuses", status="fetch me")).body
    fetched = await alice.request("POST", "/api/kith/v1/proxy", data={"id": posted["uri"]})
    assert fetched.status == 200
    assert fetched.body["id"] == posted["uri"]
    missing = await alice.request(
        "POST", "/api/kith/v1/proxy", data={"id": there.url("/objects/1")}
    )
    assert missing.status == 404
    assert (await alice.request("POST", "/api/kith/v1/proxy", data={"id": "ftp://x"})).status == 422
    assert (await ApiClient(here, None).request("POST", "/api/kith/v1/proxy")).status == 401


async def test_proxy_url_refuses_addresses_the_node_would_not_fetch(nodes: NodeFactory) -> None:
    guarded = await nodes.start(federation__allow_private_addresses=False)
    alice = await client_for(guarded, "alice")
    for url in ("http://127.0.0.1:1/x", "http://10.0.0.1/x", "http://user:pw@example.com/"):
        answer = await alice.request("POST", "/api/kith/v1/proxy", data={"id": url})
        assert answer.status == 422, url


@pytest.fixture
async def client_site() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A C2S client's web site serving its own AS2 document at /app.json."""
    document: dict[str, Any] = {}

    async def app_json(request: web.Request) -> web.Response:
        return web.json_response(document, content_type="application/activity+json")

    app = web.Application()
    app.router.add_get("/app.json", app_json)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    await web.SockSite(runner, listener).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", document
    await runner.cleanup()


async def test_a_client_named_by_its_url_is_read_from_its_document(
    node: Node, client_site: tuple[str, dict[str, Any]]
) -> None:
    base, document = client_site
    client_id = f"{base}/app.json"
    elsewhere = "https://app.example/callback"
    document.update(
        {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": client_id,
            "type": "Application",
            "name": "Tiny C2S",
            "redirectURI": [elsewhere],
        }
    )
    await node.create_user("alice", password="correct horse")
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": elsewhere,  # another origin, allowed because the document says so
        "scope": "read write",
        "code_challenge": challenge.rstrip("="),
        "code_challenge_method": "S256",
    }
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(node.url("/oauth/authorize"), params=query) as page:
            assert page.status == 200, await page.text()
            html = await page.text()
        assert "Authorize Tiny C2S" in html
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
        fields.update(username="alice", password="correct horse", decision="approve")
        async with browser.post(
            node.url("/oauth/authorize"), data=fields, allow_redirects=False
        ) as response:
            assert response.status == 302, await response.text()
            location = response.headers["Location"]
    assert location.startswith(elsewhere)
    code = parse_qs(urlsplit(location).query)["code"][0]
    async with node.http.post(
        node.url("/oauth/token"),
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": elsewhere,
            "code_verifier": verifier,
        },
    ) as response:
        assert response.status == 200, await response.text()
        token = (await response.json())["access_token"]
    posted = await _outbox(ApiClient(node, token), "alice", {"type": "Note", "content": "hi"})
    assert posted.status == 201
    # A redirect the document does not list, on another origin, is refused.
    other = {**query, "redirect_uri": "https://evil.example/callback"}
    async with node.http.get(node.url("/oauth/authorize"), params=other) as response:
        assert response.status == 400
    async with node.http.get(node.url("/.well-known/oauth-authorization-server")) as response:
        assert (await response.json())["activitypub_object_id_as_client_id"] is True
