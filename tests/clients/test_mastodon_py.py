"""Real client work through Mastodon.py, unmodified, against live nodes."""

from __future__ import annotations

import asyncio

from mastodon import CallbackStreamListener

from tests.clients.mastodon_client import signed_in
from tests.harness import Node, NodeFactory, eventually


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


async def test_two_nodes_follow_stream_and_talk_privately(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await signed_in(here, "alice")
    bob = await signed_in(there, "bob")
    handle = f"bob@{there.domain}"

    looked_up = await alice.call("account_lookup", handle)
    assert looked_up["acct"] == handle
    found = await alice.call("search_v2", f"@{handle}", resolve=True)
    assert [a["acct"] for a in found["accounts"]] == [handle]
    await alice.call("account_follow", looked_up["id"])

    async def following() -> bool:
        relation = (await alice.call("account_relationships", looked_up["id"]))[0]
        return relation["following"]

    await eventually(following)

    heard: list[tuple[str, dict]] = []
    listener = CallbackStreamListener(
        update_handler=lambda status: heard.append(("update", status)),
        notification_handler=lambda note: heard.append(("notification", note)),
    )
    stream = await alice.call("stream_user", listener, run_async=True)
    try:
        await asyncio.sleep(0.3)
        posted = await bob.call("status_post", "from the other node")

        async def update_heard() -> bool:
            return any(kind == "update" and s["uri"] == posted["uri"] for kind, s in heard)

        await eventually(update_heard)

        mine = await alice.call("status_post", "favourite me from afar")
        remote_copy = (await bob.call("search_v2", mine["uri"], resolve=True))["statuses"][0]
        await bob.call("status_favourite", remote_copy["id"])

        async def notification_heard() -> bool:
            return any(kind == "notification" and n["type"] == "favourite" for kind, n in heard)

        await eventually(notification_heard)
    finally:
        await asyncio.to_thread(stream.close)

    await alice.call("status_post", f"@{handle} just between us", visibility="direct")

    async def in_conversations() -> list:
        return await bob.call("conversations")

    threads = await eventually(in_conversations)
    assert threads[0]["last_status"]["visibility"] == "direct"
    assert [a["acct"] for a in threads[0]["accounts"]] == [f"alice@{here.domain}"]
