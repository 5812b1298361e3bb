"""A remote server of our own making for inbox tests: an actor with an RSA key, an inbox that
records, and requests signed the way Mastodon signs them (with the independent `httpsig`
library) or as RFC 9421 (`http_message_signatures`)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
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
from tests.harness import Node

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
    host: str = "127.0.0.1"
    # Another implementation's actor document (with our key filled in), served instead of ours.
    document_override: dict[str, Any] | None = None
    # Mastodon names the key `#main-key`; GoToSocial serves a stub at `/main-key`.
    key_suffix: str = "#main-key"

    def posts(self) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [request for request in self.received if request[0] == "POST"]

    @property
    def actor(self) -> str:
        return f"{self.base}/users/mallory"

    @property
    def key_id(self) -> str:
        return f"{self.actor}{self.key_suffix}"

    def private_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> str:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return public.decode()

    def document(self) -> dict[str, Any]:
        if self.document_override is not None:
            return self.document_override
        return {
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
            "id": self.actor,
            "type": "Person",
            "preferredUsername": "mallory",
            "inbox": f"{self.actor}/inbox",
            "followers": f"{self.actor}/followers",
            "publicKey": {
                "id": self.key_id,
                "owner": self.actor,
                "publicKeyPem": self.public_pem(),
            },
        }


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    found = Peer()

    async def actor(request: web.Request) -> web.Response:
        await recorded(request)
        return web.json_response(found.document(), content_type=AS2)

    async def recorded(request: web.Request) -> None:
        found.received.append(
            (request.method, request.path_qs, dict(request.headers), await request.read())
        )

    async def inbox(request: web.Request) -> web.Response:
        await recorded(request)
        return web.Response(status=202)

    app = web.Application()

    async def key_stub(request: web.Request) -> web.Response:
        await recorded(request)
        stub = {
            "@context": "https://w3id.org/security/v1",
            "id": found.key_id,
            "owner": found.actor,
            "publicKeyPem": found.public_pem(),
        }
        return web.json_response(stub, content_type=AS2)

    app.router.add_get("/users/mallory", actor)
    app.router.add_get("/users/mallory/main-key", key_stub)
    app.router.add_post("/users/mallory/inbox", inbox)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.base = f"http://{found.host}:{port}"
    yield found
    await runner.cleanup()


def create_note_activity(peer: Peer, serial: str) -> bytes:
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


def digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign_cavage(
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
        headers["Digest"] = digest(body)
    signer = httpsig.HeaderSigner(
        peer.key_id, key or peer.private_pem(), algorithm="rsa-sha256", headers=covered
    )
    signed = signer.sign(headers, method="POST", path=path)
    return {**signed, "Content-Type": AS2}


def sign_rfc9421(
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


async def post(node: Node, path: str, headers: dict[str, str], body: bytes) -> int:
    async with node.http.post(node.url(path), data=body, headers=headers) as response:
        return response.status


async def stored_items(node: Node) -> int:
    async with node.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(inbox_items))).scalar_one()
