"""Pictures between two Kith nodes: a post's attachment is copied by the receiving node (which
keeps the origin's URL as `remote_url`)."""

from __future__ import annotations

from tests.api.client import client_for
from tests.api.test_media import fetch, picture, upload
from tests.federation.social import follow, follow_state, known, stored
from tests.harness import Node, NodeFactory, eventually


async def _following(nodes: NodeFactory) -> tuple[Node, Node]:
    """Node A where alice follows bob, who is on node B."""
    a, b = await nodes.start(), await nodes.start()
    await a.create_user("alice")
    await b.create_user("bob")
    bob_on_a = await known(a, b, "bob")
    await follow(a, "alice", bob_on_a)
    alice = await a.account("alice")
    await eventually(lambda: follow_state(a, alice, bob_on_a), until="accepted".__eq__)
    return a, b


async def test_a_picture_posted_on_one_node_is_shown_on_the_other(nodes: NodeFactory) -> None:
    a, b = await _following(nodes)
    bob = await client_for(b, "bob")
    alice = await client_for(a, "alice")
    media = (await upload(bob, picture("PNG", (120, 60)), description="two colours")).body
    posted = await bob.post("/api/v1/statuses", status="look", media_ids=[media["id"]])
    assert posted.status == 200, posted.body
    await eventually(lambda: stored(a, posted.body["uri"]))

    timeline = await alice.get("/api/v1/timelines/home")
    (status,) = [s for s in timeline.body if s["uri"] == posted.body["uri"]]
    (attachment,) = status["media_attachments"]
    assert attachment["remote_url"] == media["url"]
    # A copy made on A, served from A: the picture and its preview.
    assert attachment["url"].startswith(a.url("/media/remote-"))
    assert attachment["preview_url"].startswith(a.url("/media/remote-"))
    assert attachment["url"] != attachment["preview_url"]
    assert attachment["type"] == "image"
    assert attachment["description"] == "two colours"
    assert attachment["blurhash"] == media["blurhash"]  # the same picture, the same hash
    assert attachment["meta"]["original"]["size"] == "120x60"
    for url in (attachment["url"], attachment["remote_url"]):
        code, body, headers = await fetch(a, url)
        assert code == 200
        assert headers["Content-Type"] == "image/png"
        assert body.startswith(b"\x89PNG")

    added = (await upload(bob, picture("JPEG"), description="added")).body
    edit = await bob.put(
        f"/api/v1/statuses/{posted.body['id']}",
        status="look again",
        media_ids=[media["id"], added["id"]],
    )
    assert edit.status == 200, edit.body

    async def descriptions() -> list:
        shown = (await alice.get(f"/api/v1/statuses/{status['id']}")).body
        return [m["description"] for m in shown["media_attachments"]]

    await eventually(descriptions, until=["two colours", "added"].__eq__)


async def test_a_direct_message_carries_its_picture_to_the_recipient_only(
    nodes: NodeFactory,
) -> None:
    a, b = await nodes.start(), await nodes.start()
    bob = await client_for(b, "bob")
    alice = await client_for(a, "alice")
    eve = await client_for(a, "eve")
    media = (await upload(bob, picture("JPEG"))).body
    handle = f"@alice@{a.domain}"
    sent = await bob.post(
        "/api/v1/statuses", status=f"{handle} for you", visibility="direct", media_ids=[media["id"]]
    )
    assert sent.status == 200, sent.body
    assert sent.body["media_attachments"][0]["id"] == media["id"]

    async def conversation() -> list:
        return (await alice.get("/api/v1/conversations")).body

    (thread,) = await eventually(conversation)
    (attachment,) = thread["last_status"]["media_attachments"]
    assert attachment["remote_url"] == media["url"]
    assert (await eve.get("/api/v1/conversations")).body == []
    assert (await eve.get("/api/v1/timelines/public")).body == []
