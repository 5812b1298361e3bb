"""The live inbox against independent HTTP Signature implementations (httpsig for
draft-cavage, http_message_signatures for RFC 9421): what they sign is accepted; a wrong key, a
changed body or path, a stale Date and a missing Digest are refused with 401 and store nothing.
Kith's own delivery signatures verify with httpsig."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import http_message_signatures as hms
import httpsig
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from http_message_signatures import algorithms
from sqlalchemy import func, select

from federation.tables import inbox_items
from server.social import graph
from server.social.remote_accounts import upsert_remote_account
from tests.harness import Node, NodeFactory, eventually

AS2 = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


@dataclass
class Peer:
    """A remote server of our own making: one actor, its key, and an inbox that records."""

    base: str = ""
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    @property
    def actor(self) -> str:
        return f"{self.base}/users/mallory"

    @property
    def key_id(self) -> str:
        return f"{self.actor}#main-key"

    def private_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def document(self) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
            "id": self.actor,
            "type": "Person",
            "preferredUsername": "mallory",
            "inbox": f"{self.actor}/inbox",
            "followers": f"{self.actor}/followers",
            "publicKey": {"id": self.key_id, "owner": self.actor, "publicKeyPem": public.decode()},
        }


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    found = Peer()

    async def actor(request: web.Request) -> web.Response:
        return web.json_response(found.document(), content_type=AS2)

    async def inbox(request: web.Request) -> web.Response:
        found.received.append(
            (request.method, request.path_qs, dict(request.headers), await request.read())
        )
        return web.Response(status=202)

    app = web.Application()
    app.router.add_get("/users/mallory", actor)
    app.router.add_post("/users/mallory/inbox", inbox)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.base = f"http://127.0.0.1:{port}"
    yield found
    await runner.cleanup()


def _create(peer: Peer, serial: str) -> bytes:
    note = {
        "id": f"{peer.actor}/notes/{serial}",
        "type": "Note",
        "attributedTo": peer.actor,
        "content": "<p>signed elsewhere</p>",
        "to": [PUBLIC],
        "cc": [f"{peer.actor}/followers"],
    }
    activity = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{peer.actor}/activities/{serial}",
        "type": "Create",
        "actor": peer.actor,
        "object": note,
        "to": note["to"],
        "cc": note["cc"],
    }
    return json.dumps(activity).encode()


def _digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def _cavage(
    peer: Peer,
    node: Node,
    path: str,
    body: bytes,
    when: datetime,
    key: bytes | None = None,
    with_digest: bool = True,
) -> dict[str, str]:
    """Headers signed by httpsig (Mastodon's header set), as a remote server would send."""
    covered = ["(request-target)", "host", "date"] + (["digest"] if with_digest else [])
    headers = {"Host": node.domain, "Date": format_datetime(when, usegmt=True)}
    if with_digest:
        headers["Digest"] = _digest(body)
    signer = httpsig.HeaderSigner(
        peer.key_id, key or peer.private_pem(), algorithm="rsa-sha256", headers=covered
    )
    signed = signer.sign(headers, method="POST", path=path)
    return {**signed, "Content-Type": AS2}


def _rfc9421(
    peer: Peer, node: Node, path: str, body: bytes, when: datetime, key: Any = None
) -> dict[str, str]:
    """Headers signed by http_message_signatures (RFC 9421, with Content-Digest)."""
    message = SimpleNamespace(method="POST", url=node.url(path), headers={"Content-Type": AS2})
    resolver = hms.MappingKeyResolver(public_keys={}, private_keys={peer.key_id: key or peer.key})
    signer = hms.HTTPMessageSigner(
        signature_algorithm=algorithms.RSA_V1_5_SHA256, key_resolver=resolver
    )
    signer.sign(
        message,
        key_id=peer.key_id,
        created=when,
        covered_component_ids=("@method", "@target-uri", "content-digest"),
        body=body,
    )
    return dict(message.headers)


async def _post(node: Node, path: str, headers: dict[str, str], body: bytes) -> int:
    async with node.http.post(node.url(path), data=body, headers=headers) as response:
        return response.status


async def _stored(node: Node) -> int:
    async with node.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(inbox_items))).scalar_one()


@pytest.mark.parametrize("scheme", ["cavage", "rfc9421"])
async def test_requests_signed_by_independent_libraries_are_accepted(
    nodes: NodeFactory, peer: Peer, scheme: str
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    body = _create(peer, scheme)
    sign = _cavage if scheme == "cavage" else _rfc9421
    status = await _post(node, "/inbox", sign(peer, node, "/inbox", body, node.clock()), body)
    assert status == 202
    assert await _stored(node) == 1


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _other_pem() -> bytes:
    return _other_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


TAMPERINGS = {
    "cavage wrong key": lambda peer, node, body: (
        "/inbox",
        _cavage(peer, node, "/inbox", body, node.clock(), key=_other_pem()),
        body,
    ),
    "cavage changed body": lambda peer, node, body: (
        "/inbox",
        _cavage(peer, node, "/inbox", body, node.clock()),
        body.replace(b"signed elsewhere", b"changed in flight"),
    ),
    "cavage changed path": lambda peer, node, body: (
        "/users/alice/inbox",
        _cavage(peer, node, "/inbox", body, node.clock()),
        body,
    ),
    "cavage stale date": lambda peer, node, body: (
        "/inbox",
        _cavage(peer, node, "/inbox", body, node.clock() - timedelta(days=1)),
        body,
    ),
    "cavage missing digest": lambda peer, node, body: (
        "/inbox",
        _cavage(peer, node, "/inbox", body, node.clock(), with_digest=False),
        body,
    ),
    "rfc9421 wrong key": lambda peer, node, body: (
        "/inbox",
        _rfc9421(peer, node, "/inbox", body, node.clock(), key=_other_key()),
        body,
    ),
    "rfc9421 changed body": lambda peer, node, body: (
        "/inbox",
        _rfc9421(peer, node, "/inbox", body, node.clock()),
        body.replace(b"signed elsewhere", b"changed in flight"),
    ),
    "rfc9421 changed path": lambda peer, node, body: (
        "/users/alice/inbox",
        _rfc9421(peer, node, "/inbox", body, node.clock()),
        body,
    ),
    "rfc9421 stale": lambda peer, node, body: (
        "/inbox",
        _rfc9421(peer, node, "/inbox", body, node.clock() - timedelta(days=1)),
        body,
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
async def test_tampered_or_stale_signatures_are_refused_with_401(
    nodes: NodeFactory, peer: Peer, case: str
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    path, headers, body = TAMPERINGS[case](peer, node, _create(peer, case.replace(" ", "-")))
    assert await _post(node, path, headers, body) == 401
    assert await _stored(node) == 0


async def test_kith_delivery_signatures_verify_with_httpsig(nodes: NodeFactory, peer: Peer) -> None:
    node = await nodes.start()
    alice = await node.create_user("alice")
    mallory = await known_remote(node, peer)
    await node.perform(lambda conn, now: graph.follow(conn, node.urls, alice, mallory, now))

    async def delivered() -> bool:
        return bool(peer.received)

    await eventually(delivered)
    method, path, headers, body = peer.received[0]
    assert json.loads(body)["type"] == "Follow"
    async with node.http.get(node.url("/users/alice"), headers={"Accept": AS2}) as response:
        public_pem = (await response.json(content_type=None))["publicKey"]["publicKeyPem"]
    lower = {name.lower(): value for name, value in headers.items()}
    covered = lower["signature"].split('headers="')[1].split('"')[0].split()
    assert {"(request-target)", "host", "date", "digest"} <= set(covered)
    verifier = httpsig.HeaderVerifier(
        lower, public_pem.encode(), covered, method=method, path=path, sign_header="signature"
    )
    assert verifier.verify() is True
    assert lower["digest"] == _digest(body)


async def known_remote(node: Node, peer: Peer) -> Any:
    """Mallory as the node knows her (fetched from the peer)."""
    actor = await node.federation.directory.get(peer.actor)
    async with node.db.transaction() as conn:
        return await upsert_remote_account(conn, actor, node.clock())
