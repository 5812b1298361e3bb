"""HTTP Signatures between a live node and independent implementations, over real HTTP.

What Kith sends (signed GETs by the instance actor, deliveries in cavage and, after a peer
refuses cavage, in RFC 9421) verifies with `httpsig` and `http_message_signatures`; what
those libraries sign in the forms not covered by test_inbox_signatures.py (Mastodon's
`Signature` header, personal inboxes, RFC 9421 over @authority and @path) is accepted; a
request without its body digest or signed for another server is refused with 401.
The basic accept/tamper matrix is in test_inbox_signatures.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import http_message_signatures as hms
import httpsig
import pytest
from cryptography.hazmat.primitives import serialization
from http_message_signatures import algorithms
from httpsig.utils import parse_signature_header

from federation.fetch import Fetcher
from protocol.httpsig import HttpRequest
from protocol.httpsig import sign_rfc9421 as kith_sign_rfc9421
from server.social import graph
from tests.federation.fake_peer import (
    AS2,
    Peer,
    Received,
    create_note_activity,
    digest,
    known,
    post,
    sign_cavage,
    sign_rfc9421,
    stored_items,
)
from tests.harness import FakeClock, Node, NodeFactory, eventually


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


async def _public_pem(node: Node, path: str) -> str:
    """The RSA key a node's actor document publishes, as a peer would fetch it."""
    async with node.http.get(node.url(path), headers={"Accept": AS2}) as response:
        return (await response.json(content_type=None))["publicKey"]["publicKeyPem"]


def _verify_cavage(received: Received, public_pem: str, required: set[str]) -> dict[str, str]:
    """Verify a received cavage signature with httpsig; returns its parameters."""
    method, path, headers, _body = received
    lower = _lower(headers)
    params = parse_signature_header(lower["signature"])
    covered = params["headers"].split()
    assert required <= set(covered)
    verifier = httpsig.HeaderVerifier(
        lower, public_pem.encode(), covered, method=method, path=path, sign_header="signature"
    )
    assert verifier.verify() is True
    return params


def _verify_rfc9421(
    received: Received, base: str, public_pem: str, required: tuple[str, ...]
) -> dict[str, Any]:
    """Verify a received RFC 9421 signature and its Content-Digest with http_message_signatures."""
    method, path, headers, body = received
    public_key = serialization.load_pem_public_key(public_pem.encode())
    message = SimpleNamespace(method=method, url=base + path, headers=dict(headers))
    key_id = _lower(headers)["signature-input"].split('keyid="')[1].split('"')[0]
    verifier = hms.HTTPMessageVerifier(
        signature_algorithm=algorithms.RSA_V1_5_SHA256,
        key_resolver=hms.MappingKeyResolver(public_keys={key_id: public_key}, private_keys={}),
    )
    [result] = verifier.verify(
        message, max_age=None, require_components=required, body=body or None
    )
    return result.parameters


async def _wall_clock_node(nodes: NodeFactory) -> Node:
    # http_message_signatures checks `created` against the wall clock, so the node keeps it.
    return await nodes.start(clock=FakeClock(datetime.now(UTC)))


# --- What Kith signs verifies elsewhere ----------------------------------------------------


async def test_kith_signed_gets_verify_with_httpsig_under_the_instance_actors_key(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    await node.federation.directory.get(peer.actor)
    [received] = peer.gets("/users/mallory")
    params = _verify_cavage(
        received, await _public_pem(node, "/actor"), {"(request-target)", "host", "date", "accept"}
    )
    assert params["keyid"] == node.url("/actor#main-key")
    assert params["algorithm"] == "rsa-sha256"


async def test_kith_deliveries_verify_in_cavage_and_in_rfc9421_after_the_peer_refuses_cavage(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await _wall_clock_node(nodes)
    alice = await node.create_user("alice")
    mallory = await known(node, peer)
    peer.inbox_answer = lambda headers: 202 if "Signature-Input" in headers else 401
    await node.perform(lambda conn, now: graph.follow(conn, node.urls, alice, mallory, now))

    async def posts() -> list[Received]:
        return peer.posts()

    cavage, rfc9421 = await eventually(posts, until=lambda found: len(found) >= 2)
    alice_pem = await _public_pem(node, "/users/alice")
    assert json.loads(cavage[3])["type"] == json.loads(rfc9421[3])["type"] == "Follow"
    params = _verify_cavage(cavage, alice_pem, {"(request-target)", "host", "date", "digest"})
    assert params["keyid"] == node.url("/users/alice#main-key")
    assert _lower(cavage[2])["digest"] == digest(cavage[3])
    required = ("@method", "@target-uri", "content-digest")
    assert _verify_rfc9421(rfc9421, peer.base, alice_pem, required)["keyid"] == params["keyid"]
    # The peer's preference is remembered: the next delivery goes out in RFC 9421 at once.
    await node.perform(lambda conn, now: graph.unfollow(conn, node.urls, alice, mallory, now))
    *_, undo = await eventually(posts, until=lambda found: len(found) >= 3)
    assert json.loads(undo[3])["type"] == "Undo"
    _verify_rfc9421(undo, peer.base, alice_pem, required)
    await eventually(posts, until=lambda found: len(found) == 3)


async def test_gets_signed_in_rfc9421_mode_verify_with_http_message_signatures(
    nodes: NodeFactory, peer: Peer
) -> None:
    # Kith signs its own GETs in cavage (what every peer verifies); the fetcher takes any
    # signer, so this checks RFC 9421 with the instance key as it arrives over the wire.
    node = await _wall_clock_node(nodes)
    key_id, private_key = await node.federation._signing_keys(node.url("/actor"))

    async def signer(method: str, url: str, headers: Any, body: bytes) -> dict[str, str]:
        request = HttpRequest(method, url, dict(headers), body)
        return kith_sign_rfc9421(request, key_id, private_key, node.clock())

    fetcher = Fetcher(node.federation.session, node.federation.policy, signer)
    await fetcher.get_object(peer.actor)
    [received] = peer.gets("/users/mallory")
    pem = await _public_pem(node, "/actor")
    parameters = _verify_rfc9421(received, peer.base, pem, ("@method", "@target-uri"))
    assert parameters["keyid"] == node.url("/actor#main-key")


# --- What independent libraries sign is accepted -------------------------------------------


def _mastodon_signature_header(peer: Peer, node: Node, path: str, body: bytes) -> dict[str, str]:
    return sign_cavage(peer, node, path, body, node.clock(), sign_header="signature")


def _rfc9421_authority_and_path(peer: Peer, node: Node, path: str, body: bytes) -> dict[str, str]:
    components = ("@method", "@authority", "@path", "content-digest")
    return sign_rfc9421(peer, node, path, body, node.clock(), components=components)


ACCEPTED_FORMS = {
    "cavage in the Signature header (Mastodon)": ("/inbox", _mastodon_signature_header),
    "cavage to a personal inbox": (
        "/users/alice/inbox",
        lambda peer, node, path, body: sign_cavage(peer, node, path, body, node.clock()),
    ),
    "rfc9421 to a personal inbox": (
        "/users/alice/inbox",
        lambda peer, node, path, body: sign_rfc9421(peer, node, path, body, node.clock()),
    ),
    "rfc9421 over @authority and @path": ("/inbox", _rfc9421_authority_and_path),
}


@pytest.mark.parametrize("form", sorted(ACCEPTED_FORMS))
async def test_independently_signed_requests_in_each_form_are_accepted_and_stored(
    nodes: NodeFactory, peer: Peer, form: str
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    path, sign = ACCEPTED_FORMS[form]
    body = create_note_activity(peer, "form")
    assert await post(node, path, sign(peer, node, path, body), body) == 202
    assert await stored_items(node) == 1


# --- What must be refused --------------------------------------------------------------------


async def test_an_rfc9421_post_that_does_not_sign_its_content_digest_is_refused_with_401(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    body = create_note_activity(peer, "no-digest")
    components = ("@method", "@target-uri")
    headers = sign_rfc9421(peer, node, "/inbox", body, node.clock(), components=components)
    assert "Content-Digest" not in headers
    assert await post(node, "/inbox", headers, body) == 401
    assert await stored_items(node) == 0


@pytest.mark.parametrize("scheme", ["cavage", "rfc9421"])
async def test_a_request_signed_for_another_server_is_refused_with_401(
    nodes: NodeFactory, peer: Peer, scheme: str
) -> None:
    intended, other = await nodes.start(), await nodes.start()
    body = create_note_activity(peer, "elsewhere")
    sign = sign_cavage if scheme == "cavage" else sign_rfc9421
    headers = sign(peer, intended, "/inbox", body, intended.clock())
    # Replayed verbatim (Host included) to a server it was not addressed to.
    assert await post(other, "/inbox", headers, body) == 401
    assert await stored_items(other) == 0
    assert await post(intended, "/inbox", headers, body) == 202
