"""Mastodon.py's own upload-then-post flow against a live node."""

from __future__ import annotations

import io

from tests.api.test_media import picture
from tests.clients.mastodon_client import signed_in
from tests.harness import Node, NodeFactory, eventually


async def test_media_post_then_status_post_with_media_ids(node: Node) -> None:
    alice = await signed_in(node, "alice")
    media = await alice.call(
        "media_post",
        io.BytesIO(picture("WEBP", (90, 60))),
        mime_type="image/webp",
        file_name="photo.webp",
        description="a flag",
        focus=(0.1, 0.2),
    )
    assert media["type"] == "image"
    assert media["description"] == "a flag"
    assert media["meta"]["focus"] == {"x": 0.1, "y": 0.2}
    status = await alice.call("status_post", "with a picture", media_ids=[media])
    assert [m["id"] for m in status["media_attachments"]] == [media["id"]]
    assert status["media_attachments"][0]["url"] == media["url"]


async def test_a_direct_message_with_a_picture_reaches_the_other_node(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await signed_in(here, "alice")
    bob = await signed_in(there, "bob")
    media = await alice.call(
        "media_post", io.BytesIO(picture("JPEG")), mime_type="image/jpeg", description="for bob"
    )
    sent = await alice.call(
        "status_post", f"@bob@{there.domain} a picture", visibility="direct", media_ids=[media]
    )
    assert sent["media_attachments"][0]["id"] == media["id"]

    async def conversations() -> list:
        return await bob.call("conversations")

    (conversation,) = await eventually(conversations)
    assert conversation["unread"] is True
    (attachment,) = conversation["last_status"]["media_attachments"]
    assert attachment["remote_url"] == media["url"]
    assert attachment["description"] == "for bob"
    read = await bob.call("conversations_read", conversation["id"])
    assert read["unread"] is False
