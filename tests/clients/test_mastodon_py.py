"""Real client work through Mastodon.py, unmodified, against live nodes."""

from __future__ import annotations

from tests.clients.mastodon_client import signed_in
from tests.harness import Node


async def test_post_reply_edit_and_delete(node: Node) -> None:
    alice = await signed_in(node, "alice")
    bob = await signed_in(node, "bob")
    first = await alice.call("status_post", "Hello from Mastodon.py #kith", spoiler_text="hi")
    assert first["spoiler_text"] == "hi"
    assert first["tags"][0]["name"] == "kith"
    reply = await bob.call("status_reply", first, "hello back")
    assert reply["in_reply_to_id"] == first["id"]
    assert reply["content"].endswith("hello back</p>")
    context = await alice.call("status_context", first["id"])
    assert [s["id"] for s in context["descendants"]] == [reply["id"]]
    edited = await alice.call("status_update", first["id"], "Hello, edited")
    assert edited["edited_at"] is not None
    history = await alice.call("status_history", first["id"])
    assert len(history) == 2
    await alice.call("status_delete", first["id"])
    assert await alice.call("timeline_home") == []


async def test_favourite_boost_and_bookmark(node: Node) -> None:
    alice = await signed_in(node, "alice")
    bob = await signed_in(node, "bob")
    status = await alice.call("status_post", "boost me")
    assert (await bob.call("status_favourite", status["id"]))["favourited"] is True
    boost = await bob.call("status_reblog", status["id"])
    assert boost["reblog"]["id"] == status["id"]
    assert (await bob.call("status_bookmark", status["id"]))["bookmarked"] is True
    seen = await alice.call("status", status["id"])
    assert seen["favourites_count"] == 1
    assert seen["reblogs_count"] == 1
    assert [a["username"] for a in await alice.call("status_favourited_by", status["id"])] == [
        "bob"
    ]
    assert (await bob.call("status_unreblog", status["id"]))["reblogged"] is False


async def test_timelines_paginate_with_the_library_helpers(node: Node) -> None:
    alice = await signed_in(node, "alice")
    posted = [(await alice.call("status_post", f"post {n} #paged"))["id"] for n in range(7)]
    newest_first = posted[::-1]
    page = await alice.call("timeline_home", limit=3)
    seen = [s["id"] for s in page]
    while page:
        page = await alice.call("fetch_next", page)
        seen += [s["id"] for s in page or []]
    assert seen == newest_first
    public = await alice.call("timeline_public", limit=5)
    assert [s["id"] for s in public] == newest_first[:5]
    older = await alice.call("fetch_next", public)
    assert [s["id"] for s in older] == newest_first[5:]
    tagged = await alice.call("timeline_hashtag", "paged", limit=4)
    assert [s["id"] for s in tagged] == newest_first[:4]
    older_tagged = await alice.call("timeline_hashtag", "paged", max_id=posted[2])
    assert [s["id"] for s in older_tagged] == [posted[1], posted[0]]
    newer = await alice.call("fetch_previous", older_tagged)
    assert [s["id"] for s in newer] == newest_first[:5]
