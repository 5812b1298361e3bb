"""Payloads in the shapes Mastodon, GoToSocial, Akkoma and Misskey send (tests/fixtures/activities,
provenance in its README), signed and POSTed to a live inbox, applied as those servers expect."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from federation.tables import inbox_items
from server.social.interactions import favourite_count
from server.social.statuses import boost_by, mentioned_accounts, tags_of
from server.storage.tables import conversations, reports
from tests.federation.fake_peer import Peer, post, sign_cavage
from tests.federation.social import follow_state, remote, stored
from tests.federation.social import post as publish
from tests.harness import Node, NodeFactory, eventually

FIXTURES = Path(__file__).parent.parent / "fixtures" / "activities"


class Scene:
    """A node with alice and one of her posts, and a peer speaking one implementation's dialect."""

    def __init__(self, node: Node, peer: Peer, implementation: str) -> None:
        self.node, self.peer, self.implementation = node, peer, implementation
        self.values: dict[str, str] = {}

    async def setup(self) -> None:
        alice = await self.node.create_user("alice")
        self.alice = alice
        self.alice_status = await publish(self.node, "alice", "alice's post #hello")
        self.values = {
            "{actor}": self.peer.actor,
            "{base}": self.peer.base,
            "{key_id}": self.peer.key_id,
            "{public_key_pem}": self.peer.public_pem(),
            "{alice}": self.node.urls.actor(alice),
            "{alice_url}": self.node.urls.profile(alice),
            "{alice_domain}": self.node.domain,
            "{alice_status}": self.alice_status.uri,
            "{alice_id}": str(alice.id),
        }
        self.peer.document_override = self.load("actor")

    def load(self, name: str) -> dict[str, Any]:
        text = (FIXTURES / self.implementation / f"{name}.json").read_text()
        return _filled(json.loads(text), self.values)

    async def send(self, name: str) -> int:
        body = json.dumps(self.load(name)).encode()
        headers = sign_cavage(self.peer, self.node, "/inbox", body, self.node.clock())
        status = await post(self.node, "/inbox", headers, body)

        async def applied() -> bool:
            async with self.node.db.read() as conn:
                queued = await conn.execute(
                    select(func.count())
                    .select_from(inbox_items)
                    .where(inbox_items.c.state == "queued")
                )
                return queued.scalar_one() == 0

        await eventually(applied)
        return status

    async def mallory(self) -> Any:
        return await remote(self.node, self.peer.actor)


def _filled(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, replacement in values.items():
            value = value.replace(placeholder, replacement)
        return value
    if isinstance(value, list):
        return [_filled(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _filled(item, values) for key, item in value.items()}
    return value


async def _follow_accepted(scene: Scene) -> None:
    assert await scene.send("follow") == 202
    mallory = await scene.mallory()
    assert mallory is not None
    assert await follow_state(scene.node, mallory, scene.alice) == "accepted"


async def _mastodon(scene: Scene) -> None:
    await _follow_accepted(scene)
    mallory = await scene.mallory()
    assert mallory.display_name == "Mallory :blobcat:"
    assert mallory.url == f"{scene.peer.base}/@mallory"

    assert await scene.send("create_note") == 202
    note = await stored(scene.node, f"{scene.peer.actor}/statuses/1001")
    assert note is not None
    assert note.visibility == "public"
    assert note.spoiler_text == "cats inside"
    assert note.sensitive is True
    for dangerous in ("<script", "javascript:", "onclick"):
        assert dangerous not in note.content
    async with scene.node.db.read() as conn:
        assert await tags_of(conn, note.id) == ["cats"]
        mentioned = await mentioned_accounts(conn, note.id)
    assert [a.username for a, silent in mentioned] == ["alice"]

    assert await scene.send("like") == 202
    assert await scene.send("announce") == 202
    async with scene.node.db.read() as conn:
        assert await favourite_count(conn, scene.alice_status.id) == 1
        assert await boost_by(conn, mallory.id, scene.alice_status.id) is not None

    # The real server serves the new profile too (Kith may fetch it rather than trust the copy).
    renamed = scene.load("update_person")["object"]
    scene.peer.document_override = {"@context": scene.load("actor")["@context"], **renamed}
    assert await scene.send("update_person") == 202
    assert (await scene.mallory()).display_name == "Mallory Renamed"

    assert await scene.send("flag") == 202
    async with scene.node.db.read() as conn:
        rows = (await conn.execute(select(reports))).all()
    assert [row.comment for row in rows] == ["Spam, probably"]
    assert scene.alice_status.uri in rows[0].status_uris

    assert await scene.send("delete_note") == 202
    assert await stored(scene.node, f"{scene.peer.actor}/statuses/1001") is None
    assert await scene.send("undo_follow") == 202
    assert await follow_state(scene.node, mallory, scene.alice) is None


async def _gotosocial(scene: Scene) -> None:
    await _follow_accepted(scene)
    assert any(path.endswith("/main-key") for _, path, _, _ in scene.peer.received)
    assert await scene.send("create_note") == 202
    note = await stored(scene.node, f"{scene.peer.actor}/statuses/01HGTSNOTE")
    assert note is not None
    assert note.visibility == "public"
    async with scene.node.db.read() as conn:
        assert await tags_of(conn, note.id) == ["fedi"]
    assert await scene.send("like") == 202
    async with scene.node.db.read() as conn:
        assert await favourite_count(conn, scene.alice_status.id) == 1
    assert await scene.send("delete_note") == 202
    assert await stored(scene.node, note.uri) is None


async def _akkoma(scene: Scene) -> None:
    await _follow_accepted(scene)
    assert await scene.send("create_note") == 202
    note = await stored(scene.node, f"{scene.peer.base}/objects/ak-note-1")
    assert note is not None
    assert note.visibility == "public"
    assert note.context_uri == f"{scene.peer.base}/contexts/ak-ctx-1"
    assert await scene.send("direct_message") == 202
    message = await stored(scene.node, f"{scene.peer.base}/objects/ak-dm-1")
    assert message is not None
    assert message.visibility == "direct"
    async with scene.node.db.read() as conn:
        threads = (
            await conn.execute(
                select(conversations).where(conversations.c.account_id == scene.alice.id)
            )
        ).all()
    assert [row.last_status_id for row in threads] == [message.id]
    assert await scene.send("emoji_react") == 202  # not a Like: accepted and dropped
    async with scene.node.db.read() as conn:
        assert await favourite_count(conn, scene.alice_status.id) == 0


async def _misskey(scene: Scene) -> None:
    await _follow_accepted(scene)
    assert (await scene.mallory()).display_name == "Mallory 🐱"
    assert await scene.send("create_note") == 202
    note = await stored(scene.node, f"{scene.peer.base}/notes/mknote1")
    assert note is not None
    assert "hello" in note.content
    async with scene.node.db.read() as conn:
        assert await tags_of(conn, note.id) == ["misskey"]
    assert await scene.send("like") == 202  # a reaction arrives as a Like
    async with scene.node.db.read() as conn:
        assert await favourite_count(conn, scene.alice_status.id) == 1


SCENES: dict[str, tuple[str, Callable[[Scene], Awaitable[None]]]] = {
    "mastodon": ("#main-key", _mastodon),
    "gotosocial": ("/main-key", _gotosocial),
    "akkoma": ("#main-key", _akkoma),
    "misskey": ("#main-key", _misskey),
}


@pytest.mark.parametrize("implementation", sorted(SCENES))
async def test_recorded_payloads_are_applied(
    nodes: NodeFactory, peer: Peer, implementation: str
) -> None:
    key_suffix, play = SCENES[implementation]
    peer.key_suffix = key_suffix
    scene = Scene(await nodes.start(), peer, implementation)
    await scene.setup()
    await play(scene)
