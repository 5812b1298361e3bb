"""Mastodon's status endpoints on a live node: post, read, edit, delete, threads, interactions."""

from __future__ import annotations

import re

from tests.api.client import ApiClient, client_for
from tests.harness import Node


async def test_posting_returns_a_mastodon_status_entity(node: Node) -> None:
    alice = await client_for(node, "alice")
    await node.create_user("bob")
    answer = await alice.post(
        "/api/v1/statuses",
        status="Hello @bob #Kith",
        spoiler_text="greeting",
        language="en",
    )
    assert answer.status == 200, answer.body
    status = answer.body
    assert status["id"].isdigit()
    assert status["account"]["username"] == "alice"
    assert status["visibility"] == "public"
    assert status["sensitive"] is True
    assert status["spoiler_text"] == "greeting"
    assert status["language"] == "en"
    assert [m["acct"] for m in status["mentions"]] == ["bob"]
    assert [t["name"] for t in status["tags"]] == ["kith"]
    assert 'href="' + node.url("/@bob") in status["content"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", status["created_at"])
    assert status["uri"].startswith(node.base_url)
    assert status["favourited"] is False
    assert status["favourites_count"] == 0


async def test_the_same_idempotency_key_posts_once(node: Node) -> None:
    alice = await client_for(node, "alice")
    first = await alice.request(
        "POST", "/api/v1/statuses", json={"status": "once"}, headers={"Idempotency-Key": "k1"}
    )
    again = await alice.request(
        "POST", "/api/v1/statuses", json={"status": "once"}, headers={"Idempotency-Key": "k1"}
    )
    assert first.status == again.status == 200
    assert first.body["id"] == again.body["id"]
    timeline = await alice.get("/api/v1/timelines/home")
    assert [s["content"] for s in timeline.body].count("<p>once</p>") == 1


async def test_bad_posts_are_refused_with_422_and_a_reason(node: Node) -> None:
    alice = await client_for(node, "alice")
    for fields in (
        {"status": ""},
        {"status": "x" * 5001},
        {"status": "hi", "visibility": "everyone"},
        {"status": "hi", "media_ids": ["1"]},
        {"status": "hi", "sensitive": "perhaps"},
    ):
        answer = await alice.post("/api/v1/statuses", **fields)
        assert answer.status == 422, fields
        assert answer.body["error"]
    missing_parent = await alice.post("/api/v1/statuses", status="hi", in_reply_to_id="12345")
    assert missing_parent.status == 404
    assert (await alice.get("/api/v1/timelines/home")).body == []


async def test_scopes_are_checked(node: Node) -> None:
    await node.create_user("alice")
    reader = ApiClient(node, await node.create_token("alice", "read"))
    assert (await reader.post("/api/v1/statuses", status="hi")).status == 403
    anonymous = ApiClient(node, None)
    assert (await anonymous.post("/api/v1/statuses", status="hi")).status == 401
    assert (await anonymous.get("/api/v1/timelines/home")).status == 401


async def test_private_statuses_are_hidden_from_strangers(node: Node) -> None:
    alice = await client_for(node, "alice")
    stranger = await client_for(node, "stranger")
    posted = await alice.post("/api/v1/statuses", status="secret", visibility="private")
    status_id = posted.body["id"]
    assert (await stranger.get(f"/api/v1/statuses/{status_id}")).status == 404
    assert (await ApiClient(node, None).get(f"/api/v1/statuses/{status_id}")).status == 404
    assert (await alice.get(f"/api/v1/statuses/{status_id}")).status == 200
    assert (await stranger.get("/api/v1/statuses/nonsense")).status == 404


async def test_edit_keeps_history_and_source(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    status_id = (await alice.post("/api/v1/statuses", status="first draft")).body["id"]
    edited = await alice.put(f"/api/v1/statuses/{status_id}", status="second draft")
    assert edited.status == 200
    assert edited.body["content"] == "<p>second draft</p>"
    assert edited.body["edited_at"] is not None
    history = (await alice.get(f"/api/v1/statuses/{status_id}/history")).body
    assert [v["content"] for v in history] == ["<p>first draft</p>", "<p>second draft</p>"]
    source = (await alice.get(f"/api/v1/statuses/{status_id}/source")).body
    assert source == {"id": status_id, "text": "second draft", "spoiler_text": ""}
    assert (await bob.put(f"/api/v1/statuses/{status_id}", status="mine now")).status == 403


async def test_delete_returns_the_source_and_removes_the_status(node: Node) -> None:
    alice = await client_for(node, "alice")
    status_id = (await alice.post("/api/v1/statuses", status="regret")).body["id"]
    deleted = await alice.delete(f"/api/v1/statuses/{status_id}")
    assert deleted.status == 200
    assert deleted.body["text"] == "regret"
    assert (await alice.get(f"/api/v1/statuses/{status_id}")).status == 404
    assert (await alice.delete(f"/api/v1/statuses/{status_id}")).status == 404


async def test_context_lists_ancestors_and_descendants(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    root = (await alice.post("/api/v1/statuses", status="root")).body["id"]
    reply = (await bob.post("/api/v1/statuses", status="reply", in_reply_to_id=root)).body
    assert reply["in_reply_to_id"] == root
    assert reply["in_reply_to_account_id"] == (await node.account("alice")).id.__str__()
    deeper = (
        await alice.post("/api/v1/statuses", status="deeper", in_reply_to_id=reply["id"])
    ).body
    context = (await bob.get(f"/api/v1/statuses/{reply['id']}/context")).body
    assert [s["id"] for s in context["ancestors"]] == [root]
    assert [s["id"] for s in context["descendants"]] == [deeper["id"]]
    root_status = (await bob.get(f"/api/v1/statuses/{root}")).body
    assert root_status["replies_count"] == 1


async def test_favourite_boost_and_bookmark_round_trip(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    status_id = (await alice.post("/api/v1/statuses", status="like me")).body["id"]

    liked = await bob.post(f"/api/v1/statuses/{status_id}/favourite")
    assert liked.status == 200
    assert liked.body["favourited"] is True
    assert liked.body["favourites_count"] == 1
    who = await bob.get(f"/api/v1/statuses/{status_id}/favourited_by")
    assert [a["username"] for a in who.body] == ["bob"]

    boosted = await bob.post(f"/api/v1/statuses/{status_id}/reblog")
    assert boosted.status == 200
    assert boosted.body["reblog"]["id"] == status_id
    assert boosted.body["reblogged"] is True
    assert boosted.body["reblog"]["reblogs_count"] == 1
    who = await alice.get(f"/api/v1/statuses/{status_id}/reblogged_by")
    assert [a["username"] for a in who.body] == ["bob"]

    marked = await bob.post(f"/api/v1/statuses/{status_id}/bookmark")
    assert marked.body["bookmarked"] is True

    for undo, flag in (
        ("unfavourite", "favourited"),
        ("unreblog", "reblogged"),
        ("unbookmark", "bookmarked"),
    ):
        answer = await bob.post(f"/api/v1/statuses/{status_id}/{undo}")
        assert answer.status == 200
        assert answer.body[flag] is False, undo
    final = (await alice.get(f"/api/v1/statuses/{status_id}")).body
    assert final["favourites_count"] == 0
    assert final["reblogs_count"] == 0


async def test_private_statuses_cannot_be_boosted(node: Node) -> None:
    alice = await client_for(node, "alice")
    status_id = (await alice.post("/api/v1/statuses", status="mine", visibility="private")).body[
        "id"
    ]
    answer = await alice.post(f"/api/v1/statuses/{status_id}/reblog")
    assert answer.status == 422


async def test_a_public_status_has_a_web_page(node: Node) -> None:
    alice = await client_for(node, "alice")
    status = (await alice.post("/api/v1/statuses", status="on the web")).body
    page = await ApiClient(node, None).request(
        "GET", status["url"].removeprefix(node.base_url), headers={"Accept": "text/html"}
    )
    assert page.status == 200
    assert "<p>on the web</p>" in page.body
