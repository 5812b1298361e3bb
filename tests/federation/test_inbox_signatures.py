"""The live inbox against independent HTTP Signature implementations (httpsig for
draft-cavage, http_message_signatures for RFC 9421): what they sign is accepted; a wrong key, a
changed body or path, a stale Date and a missing Digest are refused with 401 and store nothing.
Kith's own delivery signatures verify with httpsig."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpsig
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.social import graph
from server.social.remote_accounts import upsert_remote_account
from tests.federation.fake_peer import (
    AS2,
    Peer,
    create_note_activity,
    digest,
    post,
    sign_cavage,
    sign_rfc9421,
    stored_items,
)
from tests.harness import Node, NodeFactory, eventually


@pytest.mark.parametrize("scheme", ["cavage", "rfc9421"])
async def test_requests_signed_by_independent_libraries_are_accepted(
    nodes: NodeFactory, peer: Peer, scheme: str
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    body = create_note_activity(peer, scheme)
    sign = sign_cavage if scheme == "cavage" else sign_rfc9421
    status = await post(node, "/inbox", sign(peer, node, "/inbox", body, node.clock()), body)
    assert status == 202
    assert await stored_items(node) == 1


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _other_pem() -> bytes:
    return _other_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


TAMPERINGS = {
    "cavage wrong key": lambda peer, node, body: (
        "/inbox",
        sign_cavage(peer, node, "/inbox", body, node.clock(), key=_other_pem()),
        body,
    ),
    "cavage changed body": lambda peer, node, body: (
        "/inbox",
        sign_cavage(peer, node, "/inbox", body, node.clock()),
        body.replace(b"signed elsewhere", b"changed in flight"),
    ),
    "cavage changed path": lambda peer, node, body: (
        "/users/alice/inbox",
        sign_cavage(peer, node, "/inbox", body, node.clock()),
        body,
    ),
    "cavage stale date": lambda peer, node, body: (
        "/inbox",
        sign_cavage(peer, node, "/inbox", body, node.clock() - timedelta(days=1)),
        body,
    ),
    "cavage missing digest": lambda peer, node, body: (
        "/inbox",
        sign_cavage(peer, node, "/inbox", body, node.clock(), with_digest=False),
        body,
    ),
    "rfc9421 wrong key": lambda peer, node, body: (
        "/inbox",
        sign_rfc9421(peer, node, "/inbox", body, node.clock(), key=_other_key()),
        body,
    ),
    "rfc9421 changed body": lambda peer, node, body: (
        "/inbox",
        sign_rfc9421(peer, node, "/inbox", body, node.clock()),
        body.replace(b"signed elsewhere", b"changed in flight"),
    ),
    "rfc9421 changed path": lambda peer, node, body: (
        "/users/alice/inbox",
        sign_rfc9421(peer, node, "/inbox", body, node.clock()),
        body,
    ),
    "rfc9421 stale": lambda peer, node, body: (
        "/inbox",
        sign_rfc9421(peer, node, "/inbox", body, node.clock() - timedelta(days=1)),
        body,
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
async def test_tampered_or_stale_signatures_are_refused_with_401(
    nodes: NodeFactory, peer: Peer, case: str
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    path, headers, body = TAMPERINGS[case](
        peer, node, create_note_activity(peer, case.replace(" ", "-"))
    )
    assert await post(node, path, headers, body) == 401
    assert await stored_items(node) == 0


async def test_kith_delivery_signatures_verify_with_httpsig(nodes: NodeFactory, peer: Peer) -> None:
    node = await nodes.start()
    alice = await node.create_user("alice")
    mallory = await known_remote(node, peer)
    await node.perform(lambda conn, now: graph.follow(conn, node.urls, alice, mallory, now))

    async def delivered() -> bool:
        return bool(peer.posts())

    await eventually(delivered)
    method, path, headers, body = peer.posts()[0]
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
    assert lower["digest"] == digest(body)


async def known_remote(node: Node, peer: Peer) -> Any:
    """Mallory as the node knows her (fetched from the peer)."""
    actor = await node.federation.directory.get(peer.actor)
    async with node.db.transaction() as conn:
        return await upsert_remote_account(conn, actor, node.clock())
