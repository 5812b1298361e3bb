"""Payloads in the shapes Mastodon, GoToSocial, Akkoma and Misskey send (tests/fixtures/activities,
provenance in its README), applied through a live node's inbox.

For each payload a peer speaking that implementation's dialect serves the actor documents the
payload names (GoToSocial's key stubs included), signs the POST the way that implementation
signs (its header list and algorithm label, draft-cavage, RSA-SHA256) and delivers it; the
test then reads what the node stored. The placeholders in the files (`{base}`, `{actor}`, …)
are filled at load time, see the README.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select

from federation.tables import inbox_items, remote_actors, remote_keys
from server.identity.accounts import Account
from server.social import graph
from server.social.interactions import favourite_count
from server.social.remote_accounts import upsert_remote_account
from server.social.statuses import Status, boost_by, is_tombstoned, mentioned_accounts, tags_of
from server.storage.tables import conversations, notifications, reports, status_edits, statuses
from tests.federation.social import follow_state, remote, stored, visible_to
from tests.federation.social import post as publish
from tests.harness import Node, NodeFactory, eventually

FIXTURES = Path(__file__).parent.parent / "fixtures" / "activities"
AS2 = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
DANGEROUS = ("<script", "javascript:", "onclick", "onerror")


@dataclass(frozen=True)
class Dialect:
    """How one implementation names its actors and keys and signs its deliveries."""

    actor_path: str
    key_suffix: str  # Mastodon, Akkoma, Misskey: `#main-key`; GoToSocial: `/main-key`
    signed: tuple[str, ...]  # the header list each one signs, in its order
    algorithm: str
    inbox: str  # where it delivers to alice: the shared inbox, or (GoToSocial here) hers


DIALECTS = {
    "mastodon": Dialect(
        "/users/mallory",
        "#main-key",
        ("(request-target)", "host", "date", "digest", "content-type"),
        "rsa-sha256",
        "/inbox",
    ),
    "gotosocial": Dialect(
        "/users/mallory",
        "/main-key",
        ("(request-target)", "host", "date", "digest"),
        "hs2019",
        "/users/alice/inbox",
    ),
    "akkoma": Dialect(
        "/users/mallory",
        "#main-key",
        ("(request-target)", "content-length", "date", "digest", "host"),
        "rsa-sha256",
        "/inbox",
    ),
    "misskey": Dialect(
        "/users/9n4k2x0a1b",
        "#main-key",
        ("(request-target)", "date", "host", "digest"),
        "rsa-sha256",
        "/inbox",
    ),
}

# Documents a peer serves (when its implementation has them), with the key their actor signs
# with: actors at their `id`, GoToSocial's key stubs at their `publicKey.id`.
SERVED = {
    "actor": "user",
    "main_key": "user",
    "instance_actor": "instance",
    "instance_actor_main_key": "instance",
    "move_target": "target",
}


@functools.cache
def _private_key(role: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(role: str) -> str:
    public = _private_key(role).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sign(
    dialect: Dialect,
    key: rsa.RSAPrivateKey,
    key_id: str,
    host: str,
    path: str,
    body: bytes,
    now: datetime,
) -> dict[str, str]:
    """Headers for a POST signed as `dialect` signs (cavage-12, RSA-SHA256 whatever the label)."""
    headers = {
        "Host": host,
        "Date": format_datetime(now, usegmt=True),
        "Digest": "SHA-256=" + _b64(hashlib.sha256(body).digest()),
        "Content-Type": AS2,
        "Content-Length": str(len(body)),
    }
    values = {name.lower(): value for name, value in headers.items()}
    values["(request-target)"] = f"post {path}"
    signing_string = "\n".join(f"{name}: {values[name]}" for name in dialect.signed)
    signature = key.sign(signing_string.encode(), padding.PKCS1v15(), hashes.SHA256())
    headers["Signature"] = (
        f'keyId="{key_id}",algorithm="{dialect.algorithm}",'
        f'headers="{" ".join(dialect.signed)}",signature="{_b64(signature)}"'
    )
    return headers


@dataclass
class Peer:
    """A remote server: serves documents by path (410 once gone), records what it is sent."""

    base: str = ""
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    received: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.method, request.path, await request.read()))
        if request.method == "POST":
            return web.Response(status=202)
        if request.path in self.gone:
            return web.Response(status=410)
        if request.path in self.documents:
            return web.json_response(self.documents[request.path], content_type=AS2)
        return web.Response(status=404)

    def serve(self, url: str, document: dict[str, Any]) -> None:
        self.documents[urlsplit(url).path] = document

    def posted(self) -> list[tuple[str, dict[str, Any]]]:
        """The activities delivered to this server, with the path they were POSTed to."""
        return [
            (path, json.loads(body)) for method, path, body in self.received if method == "POST"
        ]


class Scene:
    """A node with alice and a post of hers; a peer speaking one implementation's dialect."""

    def __init__(self, node: Node, peer: Peer, implementation: str) -> None:
        self.node, self.peer, self.implementation = node, peer, implementation
        self.dialect = DIALECTS[implementation]
        self.values: dict[str, str] = {}
        self.signers: dict[str, tuple[str, str]] = {}  # actor id → (key role, key id)

    async def setup(self) -> None:
        self.alice = await self.node.create_user("alice")
        self.alice_status = await publish(self.node, "alice", "alice's post #hello")
        actor = self.peer.base + self.dialect.actor_path
        self.values = {
            "{base}": self.peer.base,
            "{domain}": urlsplit(self.peer.base).netloc,
            "{actor}": actor,
            "{key_id}": actor + self.dialect.key_suffix,
            "{public_key_pem}": _public_pem("user"),
            "{instance_public_key_pem}": _public_pem("instance"),
            "{target_public_key_pem}": _public_pem("target"),
            "{alice}": self.node.urls.actor(self.alice),
            "{alice_url}": self.node.urls.profile(self.alice),
            "{alice_domain}": self.node.domain,
            "{alice_id}": str(self.alice.id),
            "{alice_status}": self.alice_status.uri,
            "{alice_context}": self.alice_status.context_uri or self.alice_status.uri,
        }
        for name, role in SERVED.items():
            if (FIXTURES / self.implementation / f"{name}.json").exists():
                self.serve(name, role)

    def serve(self, name: str, role: str, document: dict[str, Any] | None = None) -> None:
        document = document or self.load(name)
        key_id = document["publicKey"]["id"]
        if name.endswith("main_key"):  # a GoToSocial stub lives at its key id
            self.peer.serve(key_id, document)
        else:
            self.peer.serve(document["id"], document)
            self.signers[document["id"]] = (role, key_id)

    @property
    def actor(self) -> str:
        return self.values["{actor}"]

    def value(self, text: str) -> str:
        return _filled(text, self.values)

    def load(self, name: str) -> dict[str, Any]:
        text = (FIXTURES / self.implementation / f"{name}.json").read_text()
        return _filled(json.loads(text), self.values)

    async def deliver(self, name: str) -> tuple[int, dict[str, Any]]:
        """Sign and POST a payload as its implementation would; the status and the payload."""
        payload = self.load(name)
        role, key_id = self.signers[payload["actor"]]
        body = json.dumps(payload).encode()
        path = self.dialect.inbox
        now = self.node.clock()
        headers = sign(self.dialect, _private_key(role), key_id, self.node.domain, path, body, now)
        async with self.node.http.post(self.node.url(path), data=body, headers=headers) as r:
            return r.status, payload

    async def send(self, name: str, expect: str = "done") -> dict[str, Any]:
        """Deliver a payload, wait until the node has processed it and check how that went."""
        status, payload = await self.deliver(name)
        assert status == 202, f"{name}: the inbox answered {status}"
        row = await eventually(lambda: self._inbox_item(payload["id"]), lambda r: r is not None)
        row = await eventually(lambda: self._inbox_item(payload["id"]), _finished)
        assert (row.state, name) == (expect, name), f"{name}: {row.last_error}"
        return payload

    async def _inbox_item(self, activity_id: str) -> Any:
        async with self.node.db.read() as conn:
            query = select(inbox_items.c.state, inbox_items.c.last_error).where(
                inbox_items.c.activity_id == activity_id
            )
            return (await conn.execute(query)).first()

    async def account(self, uri: str | None = None) -> Account:
        found = await remote(self.node, uri or self.actor)
        assert found is not None, f"no account for {uri or self.actor}"
        return found

    async def known(self, uri: str | None = None) -> Account:
        """The actor as an account here, fetched now if need be (as a search would)."""
        actor = await self.node.federation.directory.get(uri or self.actor)
        async with self.node.db.transaction() as conn:
            return await upsert_remote_account(conn, actor, self.node.clock())

    async def alice_follows(self, uri: str | None = None, accepted: bool = True) -> None:
        """alice follows the actor; `{follow_id}` then names her Follow."""
        target = await self.known(uri)
        await self.node.perform(
            lambda conn, now: graph.follow(conn, self.node.urls, self.alice, target, now)
        )
        async with self.node.db.transaction() as conn:
            follow = await graph.follow_between(conn, self.alice.id, target.id)
            assert follow is not None
            assert follow.uri is not None
            if accepted:
                await graph.set_follow_state(conn, follow, graph.ACCEPTED)
        self.values["{follow_id}"] = follow.uri

    async def status(self, uri: str) -> Status:
        found = await stored(self.node, self.value(uri))
        assert found is not None, f"no status {self.value(uri)}"
        return found

    async def alice_notifications(self) -> list[str]:
        async with self.node.db.read() as conn:
            rows = await conn.execute(
                select(notifications.c.type)
                .where(notifications.c.account_id == self.alice.id)
                .order_by(notifications.c.id)
            )
            return [row.type for row in rows]


def _finished(row: Any) -> bool:
    return row is not None and row.state != "queued"


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


@pytest.fixture
async def stage(nodes: NodeFactory) -> AsyncIterator[Callable[[str], Awaitable[Scene]]]:
    """`await stage("mastodon")`: a fresh node and a peer speaking that implementation."""
    runners: list[web.AppRunner] = []

    async def start(implementation: str) -> Scene:
        peer = Peer()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", peer.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        peer.base = f"http://127.0.0.1:{port}"
        scene = Scene(await nodes.start(), peer, implementation)
        await scene.setup()
        return scene

    yield start
    for runner in runners:
        await runner.cleanup()


def _split(case: str) -> tuple[str, str]:
    implementation, name = case.split("/")
    return implementation, name


# --- actors and follows -----------------------------------------------------------------------

PROFILES = {
    "mastodon": {
        "display_name": "Mallory :blobcat:",
        "url": "{base}/@mallory",
        "is_locked": False,
        "is_discoverable": True,
        "also_known_as": ["https://mastodon-old.example/users/mallory"],
        "shared_inbox": "{base}/inbox",
    },
    "gotosocial": {
        "display_name": "mallory on gts",
        "url": "{base}/@mallory",
        "is_locked": True,
        "is_discoverable": True,
        "also_known_as": ["https://mastodon-old.example/users/mallory"],
        "shared_inbox": None,
    },
    "akkoma": {
        "display_name": "Mallory (akkoma) :akkoma:",
        "url": "{actor}",
        "is_locked": False,
        "is_discoverable": False,
        "also_known_as": [],
        "shared_inbox": "{base}/inbox",
    },
    "misskey": {
        "display_name": "Mallory 🐱",
        "url": "{base}/@mallory",
        "is_locked": False,
        "is_discoverable": True,
        "also_known_as": [],
        "shared_inbox": "{base}/inbox",
    },
}


@pytest.mark.parametrize("implementation", sorted(PROFILES))
async def test_actor_document_becomes_a_remote_account_with_its_key(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    await scene.send("follow")
    mallory = await scene.account()
    expected = PROFILES[implementation]
    assert mallory.username == "mallory"
    assert mallory.display_name == expected["display_name"]
    assert mallory.url == scene.value(expected["url"])
    assert mallory.followers_url == f"{scene.actor}/followers"
    assert (mallory.is_locked, mallory.is_discoverable) == (
        expected["is_locked"],
        expected["is_discoverable"],
    )
    assert json.loads(mallory.also_known_as or "[]") == expected["also_known_as"]
    for dangerous in DANGEROUS:
        assert dangerous not in mallory.note
    async with scene.node.db.read() as conn:
        actor_row = (
            await conn.execute(select(remote_actors).where(remote_actors.c.uri == scene.actor))
        ).one()
        key_owner = (
            await conn.execute(
                select(remote_keys.c.owner_uri).where(
                    remote_keys.c.key_id == scene.value("{key_id}")
                )
            )
        ).scalar_one()
    shared = expected["shared_inbox"]
    assert actor_row.shared_inbox_url == (scene.value(shared) if shared else None)
    assert actor_row.inbox_url == f"{scene.actor}/inbox"
    assert key_owner == scene.actor


async def test_gotosocial_key_is_resolved_through_its_stub_to_the_owner(
    stage: Callable[[str], Awaitable[Scene]],
) -> None:
    scene = await stage("gotosocial")
    await scene.send("follow")
    fetched = [path for method, path, _ in scene.peer.received if method == "GET"]
    assert fetched[:2] == ["/users/mallory/main-key", "/users/mallory"]


@pytest.mark.parametrize("implementation", sorted(DIALECTS))
async def test_follow_is_accepted_and_answered_with_the_follow_embedded(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    follow = await scene.send("follow")
    assert await follow_state(scene.node, await scene.account(), scene.alice) == "accepted"
    assert await scene.alice_notifications() == ["follow"]

    async def delivered() -> list[tuple[str, dict[str, Any]]]:
        return [(p, a) for p, a in scene.peer.posted() if a.get("type") == "Accept"]

    [(path, accept)] = await eventually(delivered)
    # GoToSocial publishes no shared inbox: the answer goes to the actor's own inbox.
    assert path == ("/users/mallory/inbox" if implementation == "gotosocial" else "/inbox")
    assert accept["actor"] == scene.value("{alice}")
    assert accept["object"]["id"] == follow["id"]
    assert accept["object"]["actor"] == scene.actor


@pytest.mark.parametrize(
    "case",
    [
        "mastodon/accept_follow",
        "gotosocial/accept_follow",
        "akkoma/accept_follow",
        "akkoma/accept_follow_uri_only",
        "misskey/accept_follow",
    ],
)
async def test_accept_of_our_follow_request_accepts_it(
    stage: Callable[[str], Awaitable[Scene]], case: str
) -> None:
    implementation, name = _split(case)
    scene = await stage(implementation)
    await scene.alice_follows(accepted=False)
    mallory = await scene.account()
    assert await follow_state(scene.node, scene.alice, mallory) == "requested"
    await scene.send(name)
    assert await follow_state(scene.node, scene.alice, mallory) == "accepted"


@pytest.mark.parametrize(
    "case", ["mastodon/reject_follow", "akkoma/reject_follow", "misskey/reject_follow"]
)
async def test_reject_of_our_follow_request_removes_it(
    stage: Callable[[str], Awaitable[Scene]], case: str
) -> None:
    implementation, name = _split(case)
    scene = await stage(implementation)
    await scene.alice_follows(accepted=False)
    await scene.send(name)
    assert await follow_state(scene.node, scene.alice, await scene.account()) is None


@pytest.mark.parametrize("implementation", ["akkoma", "mastodon", "misskey"])
async def test_undo_follow_removes_the_follow(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    await scene.send("follow")
    mallory = await scene.account()
    assert await follow_state(scene.node, mallory, scene.alice) == "accepted"
    await scene.send("undo_follow")
    assert await follow_state(scene.node, mallory, scene.alice) is None


# --- posts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What a stored post must look like (strings may hold placeholders)."""

    uri: str
    words: tuple[str, ...]  # text the sanitised content keeps
    tags: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    spoiler_text: str = ""
    sensitive: bool = False
    language: str | None = None
    url: str | None = None
    context: str | None = None
    absent: tuple[str, ...] = ()  # text that must not reach the content


PUBLIC_NOTES = {
    "mastodon/create_note": Expected(
        uri="{actor}/statuses/1001",
        words=("look", ":blobcat:", "#<span>Cats</span>"),
        tags=("cats",),
        mentions=("alice",),
        spoiler_text="cats inside",
        sensitive=True,
        language="en",
        url="{base}/@mallory/1001",
        context="tag:{domain},2026-11-24:objectId=1:objectType=Conversation",
    ),
    "mastodon/create_note_content_map_only": Expected(
        uri="{actor}/statuses/1006",
        words=("Katzen",),
        tags=("katzen",),
        language="de",
        url="{base}/@mallory/1006",
    ),
    "gotosocial/create_note": Expected(
        uri="{actor}/statuses/01HGTSNOTE",
        words=("a gts post", ":rainbow:"),
        tags=("fedi",),
        language="en",
        url="{base}/@mallory/statuses/01HGTSNOTE",
    ),
    "akkoma/create_note": Expected(
        uri="{base}/objects/ak-note-1",
        words=("hello from akkoma", ":akkoma:"),
        mentions=("alice",),
        context="{base}/contexts/ak-ctx-1",
    ),
    "misskey/create_note": Expected(
        uri="{base}/notes/9n4k5b6c7d",
        words=("hello", "<i><span>world</span></i>", "RE:"),
        tags=("misskey",),
        absent=("$[tada",),
    ),
}


@pytest.mark.parametrize("case", sorted(PUBLIC_NOTES))
async def test_public_note_is_stored_sanitised_with_its_tags_and_mentions(
    stage: Callable[[str], Awaitable[Scene]], case: str
) -> None:
    implementation, name = _split(case)
    scene = await stage(implementation)
    await scene.send(name)
    expected = PUBLIC_NOTES[case]
    note = await scene.status(expected.uri)
    assert note.visibility == "public"
    assert note.account_id == (await scene.account()).id
    for word in expected.words:
        assert word in note.content, f"{word!r} not in {note.content!r}"
    for unwanted in DANGEROUS + expected.absent:
        assert unwanted not in note.content
    assert (note.spoiler_text, note.sensitive) == (expected.spoiler_text, expected.sensitive)
    assert note.language == expected.language
    assert note.url == scene.value(expected.url or expected.uri)
    if expected.context:
        assert note.context_uri == scene.value(expected.context)
    async with scene.node.db.read() as conn:
        assert sorted(await tags_of(conn, note.id)) == list(expected.tags)
        mentioned = await mentioned_accounts(conn, note.id)
    assert [(account.username, silent) for account, silent in mentioned] == [
        (username, False) for username in expected.mentions
    ]
    assert await visible_to(scene.node, None, note.uri)
    if expected.mentions:
        assert "mention" in await scene.alice_notifications()


async def test_followers_only_note_is_private_and_shown_to_followers(
    stage: Callable[[str], Awaitable[Scene]],
) -> None:
    scene = await stage("mastodon")
    await scene.alice_follows()
    await scene.node.create_user("bob")
    await scene.send("create_note_followers_only")
    note = await scene.status("{actor}/statuses/1003")
    assert note.visibility == "private"
    assert await visible_to(scene.node, "alice", note.uri)
    assert not await visible_to(scene.node, "bob", note.uri)
    assert not await visible_to(scene.node, None, note.uri)


async def test_followers_only_note_without_a_follower_here_is_refused(
    stage: Callable[[str], Awaitable[Scene]],
) -> None:
    scene = await stage("mastodon")
    await scene.send("create_note_followers_only", expect="rejected")
    assert await stored(scene.node, scene.value("{actor}/statuses/1003")) is None


@pytest.mark.parametrize(
    ("case", "uri"),
    [
        ("akkoma/direct_message", "{base}/objects/ak-dm-1"),
        ("mastodon/create_direct", "{actor}/statuses/1004"),
    ],
)
async def test_direct_message_is_direct_and_opens_a_conversation(
    stage: Callable[[str], Awaitable[Scene]], case: str, uri: str
) -> None:
    implementation, name = _split(case)
    scene = await stage(implementation)
    await scene.node.create_user("bob")
    await scene.send(name)
    message = await scene.status(uri)
    assert message.visibility == "direct"
    assert await visible_to(scene.node, "alice", message.uri)
    assert not await visible_to(scene.node, "bob", message.uri)
    async with scene.node.db.read() as conn:
        threads = (
            await conn.execute(
                select(conversations.c.last_status_id).where(
                    conversations.c.account_id == scene.alice.id
                )
            )
        ).all()
    assert [row.last_status_id for row in threads] == [message.id]


@pytest.mark.parametrize(
    ("case", "uri"),
    [
        ("gotosocial/create_reply", "{actor}/statuses/01HGTSREPLY00000000000000"),
        ("mastodon/create_reply", "{actor}/statuses/1005"),
    ],
)
async def test_reply_is_linked_to_the_local_post_it_answers(
    stage: Callable[[str], Awaitable[Scene]], case: str, uri: str
) -> None:
    implementation, name = _split(case)
    scene = await stage(implementation)
    await scene.send(name)
    reply = await scene.status(uri)
    assert reply.in_reply_to_id == scene.alice_status.id
    assert reply.in_reply_to_uri == scene.alice_status.uri
    assert reply.context_uri == scene.value("{alice_context}")
    assert await scene.alice_notifications() == ["mention"]


async def test_update_note_replaces_the_content_and_keeps_the_old_version(
    stage: Callable[[str], Awaitable[Scene]],
) -> None:
    scene = await stage("mastodon")
    await scene.send("create_note")
    original = await scene.status("{actor}/statuses/1001")
    await scene.send("update_note")
    edited = await scene.status("{actor}/statuses/1001")
    assert "fewer cats" in edited.content
    for dangerous in DANGEROUS:
        assert dangerous not in edited.content
    assert edited.spoiler_text == "cats inside (edited)"
    assert edited.edited_at is not None
    async with scene.node.db.read() as conn:
        history = (
            await conn.execute(
                select(status_edits.c.content).where(status_edits.c.status_id == edited.id)
            )
        ).all()
    assert [row.content for row in history] == [original.content]


@pytest.mark.parametrize(
    ("case", "uri"),
    [
        ("gotosocial/delete_note", "{actor}/statuses/01HGTSNOTE"),  # a bare object URI
        ("mastodon/delete_note", "{actor}/statuses/1001"),  # a Tombstone
        ("misskey/delete_note", "{base}/notes/9n4k5b6c7d"),  # a Tombstone, random activity id
    ],
)
async def test_delete_note_removes_the_post_for_good(
    stage: Callable[[str], Awaitable[Scene]], case: str, uri: str
) -> None:
    implementation, name = _split(case)
    scene = await stage(implementation)
    await scene.send("create_note")
    await scene.status(uri)
    await scene.send(name)
    assert await stored(scene.node, scene.value(uri)) is None
    async with scene.node.db.read() as conn:
        assert await is_tombstoned(conn, scene.value(uri))


# --- interactions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["gotosocial/like", "mastodon/like", "misskey/like", "misskey/like_custom_emoji"]
)
async def test_like_counts_a_favourite_and_notifies(
    stage: Callable[[str], Awaitable[Scene]], case: str
) -> None:
    implementation, name = _split(case)
    scene = await stage(implementation)
    await scene.send(name)
    async with scene.node.db.read() as conn:
        assert await favourite_count(conn, scene.alice_status.id) == 1
    assert await scene.alice_notifications() == ["favourite"]


@pytest.mark.parametrize("implementation", ["mastodon", "misskey"])
async def test_undo_like_removes_the_favourite(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    await scene.send("like")
    await scene.send("undo_like")
    async with scene.node.db.read() as conn:
        assert await favourite_count(conn, scene.alice_status.id) == 0


async def test_emoji_react_is_accepted_and_changes_nothing(
    stage: Callable[[str], Awaitable[Scene]],
) -> None:
    scene = await stage("akkoma")
    status, _ = await scene.deliver("emoji_react")
    assert status == 202
    async with scene.node.db.read() as conn:
        queued = await conn.execute(select(func.count()).select_from(inbox_items))
        assert queued.scalar_one() == 0
        assert await favourite_count(conn, scene.alice_status.id) == 0
    assert await scene.alice_notifications() == []


@pytest.mark.parametrize("implementation", sorted(DIALECTS))
async def test_announce_of_a_local_post_is_stored_as_a_boost(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    announce = await scene.send("announce")
    async with scene.node.db.read() as conn:
        boost = await boost_by(conn, (await scene.account()).id, scene.alice_status.id)
    assert boost is not None
    assert boost.uri == announce["id"]
    assert boost.visibility == "public"
    assert await scene.alice_notifications() == ["reblog"]


@pytest.mark.parametrize("implementation", ["akkoma", "mastodon"])
async def test_undo_announce_removes_the_boost(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)  # Akkoma names the Announce by id only
    announce = await scene.send("announce")
    await scene.send("undo_announce")
    assert await stored(scene.node, announce["id"]) is None
    async with scene.node.db.read() as conn:
        assert await boost_by(conn, (await scene.account()).id, scene.alice_status.id) is None


@pytest.mark.parametrize("implementation", ["akkoma", "gotosocial", "mastodon"])
async def test_block_severs_follows_both_ways(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    await scene.send("follow")
    await scene.alice_follows()
    mallory = await scene.account()
    assert await follow_state(scene.node, mallory, scene.alice) == "accepted"
    await scene.send("block")
    assert await follow_state(scene.node, mallory, scene.alice) is None
    assert await follow_state(scene.node, scene.alice, mallory) is None
    async with scene.node.db.read() as conn:
        assert await graph.block_between(conn, mallory.id, scene.alice.id) is not None


@pytest.mark.parametrize("implementation", ["akkoma", "mastodon"])
async def test_undo_block_lifts_the_block(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)  # Akkoma names the Block by id only
    await scene.send("block")
    await scene.send("undo_block")
    mallory = await scene.account()
    async with scene.node.db.read() as conn:
        assert await graph.block_between(conn, mallory.id, scene.alice.id) is None


@pytest.mark.parametrize("implementation", ["gotosocial", "mastodon"])
async def test_flag_from_the_instance_actor_is_stored_as_a_report(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    flag = await scene.send("flag")
    async with scene.node.db.read() as conn:
        rows = (await conn.execute(select(reports))).all()
    [report] = rows
    reporter = await scene.account(flag["actor"])
    assert reporter.actor_type == "Application"
    assert (report.account_id, report.target_account_id) == (reporter.id, scene.alice.id)
    assert report.comment == flag["content"]
    assert json.loads(report.status_uris) == [scene.alice_status.uri]
    assert report.uri == flag["id"]


# --- accounts ---------------------------------------------------------------------------------


async def test_update_person_refreshes_the_profile_from_its_server(
    stage: Callable[[str], Awaitable[Scene]],
) -> None:
    scene = await stage("mastodon")
    await scene.send("follow")
    assert (await scene.account()).display_name == "Mallory :blobcat:"
    renamed = scene.load("update_person")["object"]
    # Kith reads the profile from the actor's server, not from the (unsigned) embedded copy.
    scene.serve("actor", "user", {"@context": scene.load("actor")["@context"], **renamed})
    await scene.send("update_person")
    assert (await scene.account()).display_name == "Mallory Renamed"


@pytest.mark.parametrize("implementation", ["akkoma", "mastodon", "misskey"])
async def test_delete_person_removes_the_account_its_posts_and_follows(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    await scene.send("follow")
    await scene.send("create_note")
    await scene.alice_follows()
    scene.peer.gone.add(urlsplit(scene.actor).path)  # its server answers 410 from now on
    await scene.send("delete_person")
    mallory = await scene.account()
    assert mallory.is_deleted
    assert await follow_state(scene.node, mallory, scene.alice) is None
    assert await follow_state(scene.node, scene.alice, mallory) is None
    async with scene.node.db.read() as conn:
        left = await conn.execute(
            select(func.count()).select_from(statuses).where(statuses.c.account_id == mallory.id)
        )
        assert left.scalar_one() == 0


MOVE_TARGETS = {
    "gotosocial": "{base}/users/mallory_new",
    "mastodon": "{base}/users/mallory_new",
    "misskey": "{base}/users/9n4k2x0z9y",
}


@pytest.mark.parametrize("implementation", sorted(MOVE_TARGETS))
async def test_move_takes_local_followers_to_the_target_that_lists_the_origin(
    stage: Callable[[str], Awaitable[Scene]], implementation: str
) -> None:
    scene = await stage(implementation)
    await scene.alice_follows()
    await scene.send("move")
    target_uri = scene.value(MOVE_TARGETS[implementation])
    origin, target = await scene.account(), await scene.account(target_uri)
    assert origin.moved_to_uri == target_uri
    assert await follow_state(scene.node, scene.alice, origin) is None
    assert await follow_state(scene.node, scene.alice, target) == "requested"

    async def follows_sent() -> list[dict[str, Any]]:
        return [a for _, a in scene.peer.posted() if a.get("type") == "Follow"]

    sent = await eventually(follows_sent, lambda found: len(found) == 2)
    assert [activity["object"] for activity in sent] == [scene.actor, target_uri]


async def test_move_to_a_target_that_does_not_list_the_origin_is_refused(
    stage: Callable[[str], Awaitable[Scene]],
) -> None:
    scene = await stage("mastodon")
    target = scene.load("move_target")
    scene.serve("move_target", "target", {**target, "alsoKnownAs": []})
    await scene.alice_follows()
    await scene.send("move", expect="rejected")
    assert await follow_state(scene.node, scene.alice, await scene.account()) == "accepted"
