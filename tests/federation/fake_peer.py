"""A remote server of our own making for inbox tests, on 127.0.0.1 over real HTTP.

It serves actor documents with RSA keys for a few remote users (Mastodon's `#main-key` in the
actor, or GoToSocial's `/main-key` stub), objects by id, and whatever a test wants it to get
wrong (content types, ids, redirects); its inboxes record what they receive and answer what
the test says. Requests are signed the way Mastodon signs them with the independent `httpsig`
library (draft-cavage), or as RFC 9421 with `http_message_signatures`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import http_message_signatures as hms
import httpsig
import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from http_message_signatures import algorithms
from sqlalchemy import func, select

from federation.tables import inbox_items
from protocol.actors import parse_actor
from server.identity.accounts import Account
from server.social.remote_accounts import upsert_remote_account
from tests.harness import Node

AS2 = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
AS2_CONTEXT = "https://www.w3.org/ns/activitystreams"
# (method, path and query, headers, body) of each request the peer received.
Received = tuple[str, str, dict[str, str], bytes]


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(eq=False)
class RemoteUser:
    """One actor on a peer, with its own RSA key."""

    peer: Peer = field(repr=False)
    name: str
    key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key, repr=False)

    @property
    def actor(self) -> str:
        return f"{self.peer.base}/users/{self.name}"

    @property
    def key_id(self) -> str:
        return f"{self.actor}{self.peer.key_suffix}"

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
        """A Mastodon-shaped Person with its key."""
        return {
            "@context": [AS2_CONTEXT, "https://w3id.org/security/v1"],
            "id": self.actor,
            "type": "Person",
            "preferredUsername": self.name,
            "inbox": f"{self.actor}/inbox",
            "followers": f"{self.actor}/followers",
            "endpoints": {"sharedInbox": f"{self.peer.base}/inbox"},
            "publicKey": {
                "id": self.key_id,
                "owner": self.actor,
                "publicKeyPem": self.public_pem(),
            },
        }


@dataclass
class Served:
    """A canned answer for one path."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class Peer:
    """A remote server: users (mallory first), canned documents, and inboxes that record.

    `actor`, `key`, `key_id` and the PEM helpers are mallory's, the user most tests need.
    """

    base: str = ""
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    # Another implementation's actor document (with our key filled in), served for mallory.
    document_override: dict[str, Any] | None = None
    # Mastodon names the key `#main-key`; GoToSocial serves a stub at `/main-key`.
    key_suffix: str = "#main-key"
    # The status an inbox answers a POST with, from the request's headers.
    inbox_answer: Callable[[Mapping[str, str]], int] = lambda _headers: 202
    # How long an inbox takes to answer (a slow server); what it received is recorded first.
    inbox_delay_s: float = 0.0
    users: dict[str, RemoteUser] = field(default_factory=dict, repr=False)
    served: dict[str, Served] = field(default_factory=dict)
    _spawn: Callable[[str], Any] | None = field(default=None, repr=False)

    def user(self, name: str) -> RemoteUser:
        """The peer's user `name`, created (with a fresh key) on first use."""
        if name not in self.users:
            self.users[name] = RemoteUser(self, name)
        return self.users[name]

    @property
    def mallory(self) -> RemoteUser:
        return self.user("mallory")

    @property
    def actor(self) -> str:
        return self.mallory.actor

    @property
    def key(self) -> rsa.RSAPrivateKey:
        return self.mallory.key

    @property
    def key_id(self) -> str:
        return self.mallory.key_id

    def private_pem(self) -> bytes:
        return self.mallory.private_pem()

    def public_pem(self) -> str:
        return self.mallory.public_pem()

    def document(self) -> dict[str, Any]:
        if self.document_override is not None:
            return self.document_override
        return self.mallory.document()

    def url(self, path: str) -> str:
        return self.base + path

    def posts(self) -> list[Received]:
        return [request for request in self.received if request[0] == "POST"]

    def gets(self, path: str | None = None) -> list[Received]:
        """GETs received, all or those for one path."""
        return [
            request
            for request in self.received
            if request[0] == "GET" and (path is None or request[1].split("?")[0] == path)
        ]

    def serve(
        self, path: str, document: dict[str, Any], content_type: str = AS2, status: int = 200
    ) -> None:
        """Answer GETs of `path` with this document (whatever its id says)."""
        body = json.dumps(document).encode()
        self.served[path] = Served(status, body, {"Content-Type": content_type})

    def serve_file(self, path: str, data: bytes, content_type: str) -> str:
        """Answer GETs of `path` with these bytes (a picture); its URL."""
        self.served[path] = Served(200, data, {"Content-Type": content_type})
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.served[path] = Served(status, headers={"Location": location})

    def note(self, author: RemoteUser, serial: str, **fields: Any) -> dict[str, Any]:
        """A public Note by `author`, served at its id; `fields` override or add properties."""
        note_id = f"{author.actor}/notes/{serial}"
        document = {
            "@context": AS2_CONTEXT,
            "id": note_id,
            "type": "Note",
            "attributedTo": author.actor,
            "content": f"<p>{author.name} wrote {serial}</p>",
            "published": "2026-11-24T11:00:00Z",
            "to": [PUBLIC],
            "cc": [f"{author.actor}/followers"],
            **fields,
        }
        self.serve(note_id.removeprefix(self.base), document)
        return document

    async def spawn(self, host: str = "127.0.0.1") -> Peer:
        """Another peer on its own port: another origin, stopped with this one."""
        assert self._spawn is not None
        return await self._spawn(host)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append((request.method, request.path_qs, dict(request.headers), body))
        canned = self.served.get(request.path)
        if canned is not None and request.method == "GET":
            return web.Response(status=canned.status, body=canned.body, headers=canned.headers)
        if request.method == "POST" and request.path.endswith("/inbox"):
            await asyncio.sleep(self.inbox_delay_s)
            return web.Response(status=self.inbox_answer(request.headers))
        parts = request.path.strip("/").split("/")
        if request.method != "GET" or len(parts) not in (2, 3) or parts[0] != "users":
            return web.Response(status=404)
        found = self.users.get(parts[1])
        if found is None:
            return web.Response(status=404)
        if len(parts) == 2:
            document = self.document() if found.name == "mallory" else found.document()
            return web.json_response(document, content_type=AS2)
        if parts[2] == "main-key":  # GoToSocial's key stub
            stub = {
                "@context": "https://w3id.org/security/v1",
                "id": found.key_id,
                "owner": found.actor,
                "publicKeyPem": found.public_pem(),
            }
            return web.json_response(stub, content_type=AS2)
        return web.Response(status=404)


async def _start_peer(stack: AsyncExitStack, host: str) -> Peer:
    found = Peer(host=host)
    found.user("mallory")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.base = f"http://{host}:{port}"
    found._spawn = lambda other_host: _start_peer(stack, other_host)
    return found


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with AsyncExitStack() as stack:
        yield await _start_peer(stack, "127.0.0.1")


class FakeDns(aiohttp.ThreadedResolver):
    """The resolver behind federation/fetch.py's guard, with answers for some names.

    Install with `monkeypatch.setattr(aiohttp, "ThreadedResolver", FakeDns.answering(...))`
    before starting the node: fetch.py builds its resolver when the node starts.
    """

    answers: Mapping[str, str] = {}

    @classmethod
    def answering(cls, answers: Mapping[str, str]) -> type[FakeDns]:
        return type("FakeDnsFor", (cls,), {"answers": dict(answers)})

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers.get(host)
        if address is None:
            return await super().resolve(host, port, family)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]


# --- Activities and signatures -------------------------------------------------------------


def create_note_activity(peer: Peer | RemoteUser, serial: str) -> bytes:
    note = {
        "id": f"{peer.actor}/notes/{serial}",
        "type": "Note",
        "attributedTo": peer.actor,
        "content": "<p>signed elsewhere</p>",
        "to": [PUBLIC],
        "cc": [f"{peer.actor}/followers"],
    }
    activity = {
        "@context": AS2_CONTEXT,
        "id": f"{peer.actor}/activities/{serial}",
        "type": "Create",
        "actor": peer.actor,
        "object": note,
        "to": note["to"],
        "cc": note["cc"],
    }
    return json.dumps(activity).encode()


def activity(actor: RemoteUser, kind: str, serial: str, obj: Any, **fields: Any) -> dict[str, Any]:
    """An activity by `actor` with an id on its own server."""
    return {
        "@context": AS2_CONTEXT,
        "id": f"{actor.actor}/activities/{serial}",
        "type": kind,
        "actor": actor.actor,
        "object": obj,
        "to": [PUBLIC],
        **fields,
    }


def digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign_cavage(
    peer: Peer | RemoteUser,
    node: Node,
    path: str,
    body: bytes,
    when: datetime,
    key: bytes | None = None,
    with_digest: bool = True,
    sign_header: str = "authorization",
) -> dict[str, str]:
    """Headers signed by httpsig (Mastodon's header set), as a remote server would send.

    `sign_header="signature"` is Mastodon's own form; httpsig defaults to Authorization.
    """
    covered = ["(request-target)", "host", "date"] + (["digest"] if with_digest else [])
    headers = {"Host": node.domain, "Date": format_datetime(when, usegmt=True)}
    if with_digest:
        headers["Digest"] = digest(body)
    signer = httpsig.HeaderSigner(
        peer.key_id,
        key or peer.private_pem(),
        algorithm="rsa-sha256",
        headers=covered,
        sign_header=sign_header,
    )
    signed = signer.sign(headers, method="POST", path=path)
    return {**signed, "Content-Type": AS2}


def sign_rfc9421(
    peer: Peer | RemoteUser,
    node: Node,
    path: str,
    body: bytes,
    when: datetime,
    key: Any = None,
    components: tuple[str, ...] = ("@method", "@target-uri", "content-digest"),
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
        covered_component_ids=components,
        body=body if "content-digest" in components else None,
    )
    return dict(message.headers)


async def post(node: Node, path: str, headers: dict[str, str], body: bytes) -> int:
    async with node.http.post(node.url(path), data=body, headers=headers) as response:
        return response.status


async def deliver(
    node: Node, sender: Peer | RemoteUser, document: dict[str, Any], path: str = "/inbox"
) -> int:
    """POST an activity to the node's inbox, signed (cavage) by `sender` now."""
    body = json.dumps(document).encode()
    return await post(node, path, sign_cavage(sender, node, path, body, node.clock()), body)


async def known(node: Node, user: Peer | RemoteUser) -> Account:
    """The remote user as the node knows it, fetched from its peer (as a search would)."""
    actor = await node.federation.directory.get(user.actor)
    async with node.db.transaction() as conn:
        return await upsert_remote_account(conn, actor, node.clock())


async def remember(node: Node, user: RemoteUser, document: dict[str, Any] | None = None) -> None:
    """Store a remote actor (and its key) in the node as if fetched: no request is made."""
    document = document or user.document()
    async with node.db.transaction() as conn:
        await node.federation.directory.store(conn, parse_actor(document), document, node.clock())


async def stored_items(node: Node) -> int:
    async with node.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(inbox_items))).scalar_one()
