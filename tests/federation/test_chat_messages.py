"""Pleroma's ChatMessage (interop reference §6) arriving from a fake Pleroma peer, signed.

A `Create{ChatMessage}` to one local actor becomes a direct message from the sender to that
actor, in their one-to-one thread of Mastodon's conversations. The payloads have the shape of
Pleroma/Rebased's own `test/fixtures/create-chat-message.json` (an embedded ChatMessage with
`to` naming one actor, `content`, `published`; an attachment is one Document whose `url` is a
list of Links, as Pleroma writes attachments); the actor document carries Pleroma's
`capabilities`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from federation.tables import inbox_items
from server.social import graph
from tests.api.client import ApiClient, client_for
from tests.federation.fake_peer import AS2_CONTEXT, Peer, deliver, known
from tests.federation.social import stored
from tests.harness import AS2, Node, NodeFactory, eventually

LITEPUB = "http://litepub.social/ns#"


def _pleroma_actor(peer: Peer) -> dict[str, Any]:
    document = peer.mallory.document()
    document["@context"] = [AS2_CONTEXT, "https://w3id.org/security/v1", {"litepub": LITEPUB}]
    document["capabilities"] = {"acceptsChatMessages": True}
    return document


def _chat(peer: Peer, serial: str, to: list[str], **fields: Any) -> dict[str, Any]:
    message = {
        "type": "ChatMessage",
        "id": f"{peer.base}/objects/chat-{serial}",
        "attributedTo": peer.actor,
        "to": to,
        "content": f"chat {serial}",
        "published": "2026-11-24T11:59:00Z",
        **fields,
    }
    return {
        "@context": [AS2_CONTEXT, f"{peer.base}/schemas/litepub-0.1.jsonld"],
        "type": "Create",
        "id": f"{peer.base}/activities/chat-{serial}",
        "actor": peer.actor,
        "to": to,
        "object": message,
        "published": "2026-11-24T11:59:00Z",
    }


async def _inbox_item(node: Node, activity_id: str) -> Any:
    async with node.db.read() as conn:
        query = select(inbox_items.c.state, inbox_items.c.last_error).where(
            inbox_items.c.activity_id == activity_id
        )
        return (await conn.execute(query)).first()


async def _send(node: Node, peer: Peer, activity: dict[str, Any], path: str) -> Any:
    """Deliver, wait until the node has applied or refused it; its inbox row."""
    assert await deliver(node, peer, activity, path) == 202
    return await eventually(
        lambda: _inbox_item(node, activity["id"]), lambda row: row and row.state != "queued"
    )


async def _scene(nodes: NodeFactory, peer: Peer) -> tuple[Node, ApiClient, str]:
    node = await nodes.start()
    alice = await client_for(node, "alice")
    peer.document_override = _pleroma_actor(peer)
    return node, alice, node.url("/users/alice")


async def test_a_chat_message_becomes_a_direct_message_in_the_recipients_conversations(
    nodes: NodeFactory, peer: Peer
) -> None:
    node, alice, alice_uri = await _scene(nodes, peer)
    eve = await client_for(node, "eve")
    first = _chat(peer, "1", [alice_uri], content='hi <script>alert("x")</script><b>you</b>')
    row = await _send(node, peer, first, "/users/alice/inbox")
    assert (row.state, row.last_error) == ("done", None)

    (thread,) = (await alice.get("/api/v1/conversations")).body
    status = thread["last_status"]
    assert status["uri"] == first["object"]["id"]
    assert status["visibility"] == "direct"
    assert status["account"]["acct"].startswith("mallory@")
    assert [m["username"] for m in status["mentions"]] == ["alice"]
    assert "<script" not in status["content"]
    assert "alert" not in status["content"]
    assert "you" in status["content"]
    assert thread["unread"] is True
    assert [a["username"] for a in thread["accounts"]] == ["mallory"]
    notified = (await alice.get("/api/v1/notifications")).body
    assert [(n["type"], n["status"]["id"]) for n in notified] == [("mention", status["id"])]

    # The next message lands in the same one-to-one thread.
    second = _chat(peer, "2", [alice_uri], content="again")
    assert (await _send(node, peer, second, "/inbox")).state == "done"
    (thread,) = (await alice.get("/api/v1/conversations")).body
    assert thread["last_status"]["uri"] == second["object"]["id"]

    # Nobody else sees any of it.
    assert (await eve.get("/api/v1/conversations")).body == []
    assert (await eve.get(f"/api/v1/statuses/{status['id']}")).status == 404
    anonymous = ApiClient(node, None)
    assert (await anonymous.get(f"/api/v1/statuses/{status['id']}")).status == 404
    assert (await anonymous.get("/api/v1/timelines/public")).body == []


async def test_a_chat_message_may_be_only_a_picture(nodes: NodeFactory, peer: Peer) -> None:
    node, alice, alice_uri = await _scene(nodes, peer)
    picture = f"{peer.base}/media/cat.png"
    attachment = {
        "type": "Document",
        "mediaType": "image/png",
        "name": "a cat",
        "url": [{"type": "Link", "mediaType": "image/png", "href": picture}],
    }
    message = _chat(peer, "pic", [alice_uri], attachment=attachment)
    del message["object"]["content"]
    assert (await _send(node, peer, message, "/inbox")).state == "done"
    (thread,) = (await alice.get("/api/v1/conversations")).body
    (shown,) = thread["last_status"]["media_attachments"]
    assert (shown["remote_url"], shown["description"]) == (picture, "a cat")


TWO_PICTURES = [
    {"type": "Document", "mediaType": "image/png", "url": "https://x.example/1.png"},
    {"type": "Document", "mediaType": "image/png", "url": "https://x.example/2.png"},
]
# case → (recipients and fields of the message, given the peer and alice's id; the reason)
Case = Callable[[Peer, str], tuple[list[str], dict[str, Any]]]
REFUSED: dict[str, tuple[Case, str]] = {
    "two recipients": (
        lambda _, alice: ([alice, alice.replace("/alice", "/bob")], {}),
        "addressed to exactly one actor",
    ),
    "a remote recipient": (lambda peer, _: ([peer.user("other").actor], {}), "on this server"),
    "an unknown local name": (
        lambda _, alice: ([alice.replace("/alice", "/nobody")], {}),
        "on this server",
    ),
    "also in cc": (lambda _, alice: ([alice], {"cc": [f"{alice}/followers"]}), "exactly one"),
    "no content, no attachment": (lambda _, alice: ([alice], {"content": ""}), "content or"),
    "only markup": (lambda _, alice: ([alice], {"content": "<p> </p>"}), "content or"),
    "two attachments": (
        lambda _, alice: ([alice], {"attachment": TWO_PICTURES}),
        "at most one attachment",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_chat_message_that_breaks_pleromas_rules_is_refused_and_nothing_stored(
    nodes: NodeFactory, peer: Peer, case: str
) -> None:
    node, alice, alice_uri = await _scene(nodes, peer)
    await node.create_user("bob")
    make, reason = REFUSED[case]
    recipients, fields = make(peer, alice_uri)
    activity = _chat(peer, "bad", recipients, **fields)
    row = await _send(node, peer, activity, "/inbox")
    assert row.state == "rejected"
    assert reason in row.last_error
    assert await stored(node, activity["object"]["id"]) is None
    assert (await alice.get("/api/v1/conversations")).body == []
    assert (await alice.get("/api/v1/notifications")).body == []


async def test_a_chat_message_from_someone_the_recipient_blocks_is_refused(
    nodes: NodeFactory, peer: Peer
) -> None:
    node, alice, alice_uri = await _scene(nodes, peer)
    mallory = await known(node, peer)
    me = await node.account("alice")
    await node.perform(lambda conn, now: graph.block(conn, node.urls, me, mallory, now))
    activity = _chat(peer, "blocked", [alice_uri])
    row = await _send(node, peer, activity, "/inbox")
    assert (row.state, row.last_error) == ("rejected", "the recipient blocks the sender")
    assert await stored(node, activity["object"]["id"]) is None
    assert (await alice.get("/api/v1/conversations")).body == []


async def test_a_chat_message_that_exists_already_is_refused_the_second_time(
    nodes: NodeFactory, peer: Peer
) -> None:
    node, alice, alice_uri = await _scene(nodes, peer)
    first = _chat(peer, "once", [alice_uri])
    assert (await _send(node, peer, first, "/inbox")).state == "done"
    again = {**first, "id": f"{peer.base}/activities/chat-once-again"}
    again["object"] = {**first["object"], "content": "rewritten"}
    row = await _send(node, peer, again, "/inbox")
    assert (row.state, row.last_error) == ("rejected", "the chat message already exists")
    (thread,) = (await alice.get("/api/v1/conversations")).body
    assert thread["last_status"]["content"] == "chat once"


async def test_users_say_they_accept_chat_messages_and_the_instance_actor_does_not(
    node: Node,
) -> None:
    await node.create_user("alice")
    async with node.http.get("/users/alice", headers=AS2) as response:
        alice = await response.json(content_type=None)
    async with node.http.get("/actor", headers=AS2) as response:
        instance = await response.json(content_type=None)
    assert alice["capabilities"] == {"acceptsChatMessages": True}
    terms = alice["@context"][-1]
    assert terms["acceptsChatMessages"] == "litepub:acceptsChatMessages"
    assert terms["litepub"] == LITEPUB
    assert "capabilities" not in instance
