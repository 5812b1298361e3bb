"""Security regressions at the live inbox, one per class of the checklist's CVE table that
applies: actor and object origin spoofing, Delete/Update of someone else's object, replays,
oversize bodies, JSON nesting bombs, wrong content types, blocked domains, and key fetches to
private addresses when the operator has not allowed them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from federation.tables import inbox_items
from tests.federation.fake_peer import (
    PUBLIC,
    Peer,
    create_note_activity,
    post,
    sign_cavage,
    stored_items,
)
from tests.federation.social import post as publish
from tests.federation.social import stored
from tests.harness import Node, NodeFactory, eventually


def _signed(peer: Peer, node: Node, activity: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    body = json.dumps(activity).encode()
    return sign_cavage(peer, node, "/inbox", body, node.clock()), body


async def _item_states(node: Node) -> list[str]:
    async with node.db.read() as conn:
        return [row.state for row in await conn.execute(select(inbox_items.c.state))]


async def _processed(node: Node) -> None:
    """Wait until the inbox worker has finished with whatever was accepted."""

    async def finished() -> bool:
        return "queued" not in await _item_states(node)

    await eventually(finished)


async def test_an_activity_whose_actor_is_not_the_signer_is_refused(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    activity = json.loads(create_note_activity(peer, "spoof"))
    activity["actor"] = node.url("/users/alice")
    headers, body = _signed(peer, node, activity)
    assert await post(node, "/inbox", headers, body) == 401
    assert await stored_items(node) == 0


async def test_a_note_claimed_from_another_host_is_not_stored(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    activity = json.loads(create_note_activity(peer, "elsewhere"))
    forged = "https://victim.example/notes/1"
    activity["object"]["id"] = forged
    headers, body = _signed(peer, node, activity)
    await post(node, "/inbox", headers, body)
    await _processed(node)
    assert await stored(node, forged) is None


async def test_delete_and_update_of_someone_elses_post_change_nothing(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    status = await publish(node, "alice", "mine, not mallory's")
    update = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.actor}/activities/update",
        "type": "Update",
        "actor": peer.actor,
        "object": {
            "id": status.uri,
            "type": "Note",
            "attributedTo": peer.actor,
            "content": "<p>defaced</p>",
            "to": [PUBLIC],
        },
    }
    delete = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.actor}/activities/delete",
        "type": "Delete",
        "actor": peer.actor,
        "object": status.uri,
        "to": [PUBLIC],
    }
    for activity in (update, delete):
        headers, body = _signed(peer, node, activity)
        assert await post(node, "/inbox", headers, body) in (202, 400, 401, 403)
    await _processed(node)
    kept = await stored(node, status.uri)
    assert kept is not None
    assert kept.content == status.content


async def test_a_replayed_request_is_stored_once_and_refused_once_stale(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    body = create_note_activity(peer, "replayed")
    headers = sign_cavage(peer, node, "/inbox", body, node.clock())
    assert await post(node, "/inbox", headers, body) == 202
    assert await post(node, "/inbox", headers, body) == 202
    assert await stored_items(node) == 1
    node.clock.advance(hours=13)
    assert await post(node, "/inbox", headers, body) == 401
    assert await stored_items(node) == 1


async def test_oversize_bodies_nesting_bombs_and_wrong_types_are_refused(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start(federation__inbox_body_bytes_max=4096)
    await node.create_user("alice")
    activity = json.loads(create_note_activity(peer, "big"))
    activity["object"]["content"] = "x" * 5000
    headers, body = _signed(peer, node, activity)
    assert await post(node, "/inbox", headers, body) == 413
    bomb = b"[" * 1500 + b"]" * 1500
    bomb_body = (
        b'{"type": "Create", "id": "x", "actor": "'
        + peer.actor.encode()
        + b'", "o": '
        + bomb
        + b"}"
    )
    bomb_headers = sign_cavage(peer, node, "/inbox", bomb_body, node.clock())
    assert await post(node, "/inbox", bomb_headers, bomb_body) == 400
    headers, body = _signed(peer, node, json.loads(create_note_activity(peer, "typed")))
    headers["Content-Type"] = "text/plain"
    assert await post(node, "/inbox", headers, body) == 415
    assert await stored_items(node) == 0


async def test_a_blocked_domain_is_dropped_before_any_fetch(nodes: NodeFactory, peer: Peer) -> None:
    node = await nodes.start(federation__blocked_domains=["127.0.0.1"])
    await node.create_user("alice")
    body = create_note_activity(peer, "blocked")
    status = await post(node, "/inbox", sign_cavage(peer, node, "/inbox", body, node.clock()), body)
    assert status in (202, 401, 403)
    assert peer.received == []
    assert await stored_items(node) == 0


async def test_keys_are_not_fetched_from_private_addresses_unless_allowed(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start(federation__allow_private_addresses=False)
    await node.create_user("alice")
    body = create_note_activity(peer, "private")
    headers = sign_cavage(peer, node, "/inbox", body, node.clock())
    assert await post(node, "/inbox", headers, body) == 401
    assert peer.received == []
    assert await stored_items(node) == 0
