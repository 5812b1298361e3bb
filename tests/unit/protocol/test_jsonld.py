"""JSON-LD against shipped contexts only: every shipped URL resolves, nothing is fetched."""

import re
import socket

import pytest
from pyld import jsonld as pyld_jsonld

from protocol.errors import JsonLdError
from protocol.jsonld import expand, load_context, offline_document_loader, shipped_context_urls

AS2 = "https://www.w3.org/ns/activitystreams"
SEC = "https://w3id.org/security#"

# For each shipped context, a node using one of its terms and the IRI it must expand to.
# Expanding these proves the context was actually loaded, not silently skipped.
TERM_PER_CONTEXT = {
    AS2: ({"type": "Note", "content": "hi"}, f"{AS2}#content"),
    "https://w3id.org/security/v1": ({"publicKeyPem": "PEM"}, f"{SEC}publicKeyPem"),
    "https://w3id.org/security/multikey/v1": (
        {"type": "Multikey", "publicKeyMultibase": "z6Mk"},
        f"{SEC}publicKeyMultibase",
    ),
    "https://w3id.org/security/data-integrity/v1": (
        {"type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022"},
        f"{SEC}cryptosuite",
    ),
    "https://kith.social/ns/payments/v1": (
        {"type": "PaymentRequest", "condition": "q1Vx"},
        "https://kith.social/ns#condition",
    ),
    "https://kith.social/ns/chats/v1": (
        {"type": "Chat", "members": ["https://a.example/users/x"]},
        "https://kith.social/ns#members",
    ),
    "https://w3id.org/security/data-integrity/v2": (
        {"type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022"},
        f"{SEC}cryptosuite",
    ),
    "https://litepub.social/context.jsonld": (
        {"type": "Note", "directMessage": True},
        "http://litepub.social/ns#directMessage",
    ),
    "https://purl.archive.org/socialweb/webfinger": (
        {"webfinger": "alice@kith.example"},
        "https://purl.archive.org/socialweb/webfinger#webfinger",
    ),
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test loudly."""

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_term_table_covers_every_shipped_context() -> None:
    # Keeps this file honest when a context is added to the shipped set.
    assert set(TERM_PER_CONTEXT) == set(shipped_context_urls())


@pytest.mark.parametrize("url", sorted(shipped_context_urls()))
def test_loader_serves_every_shipped_context(url: str) -> None:
    answer = offline_document_loader(url)
    assert answer["documentUrl"] == url
    assert answer["contentType"] == "application/ld+json"
    assert answer["contextUrl"] is None
    assert "@context" in answer["document"]


@pytest.mark.parametrize("url", sorted(shipped_context_urls()))
@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda u: u.replace("https://", "http://", 1), id="http"),
        pytest.param(lambda u: u + "/", id="trailing-slash"),
        pytest.param(lambda u: u.replace("https://", "http://", 1) + "/", id="http-and-slash"),
        pytest.param(lambda u: u + "#", id="empty-fragment"),
    ],
)
def test_loader_accepts_the_variants_peers_write(url: str, variant) -> None:
    answer = offline_document_loader(variant(url))
    assert answer["document"] == load_context(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://www.w3.org/ns/did/v1",
        "https://example.com/context.jsonld",
        "https://w3id.org/security/v2",
        "https://www.w3.org/ns/activitystreams/extra",
        "ftp://www.w3.org/ns/activitystreams",
        "",
    ],
)
def test_loader_refuses_unknown_urls_with_pyld_loading_error(url: str) -> None:
    with pytest.raises(pyld_jsonld.JsonLdError) as caught:
        offline_document_loader(url)
    assert caught.value.code == "loading document failed"


def test_load_context_refuses_unknown_urls_with_the_url_in_the_reason() -> None:
    with pytest.raises(JsonLdError, match=re.escape("https://example.com/ctx")):
        load_context("https://example.com/ctx")


def test_expand_refuses_an_unknown_remote_context_with_json_ld_error(no_network: None) -> None:
    document = {"@context": "https://example.com/ctx", "id": "https://a.example/1"}
    with pytest.raises(JsonLdError, match="expansion failed"):
        expand(document)


def test_expand_refuses_an_unknown_context_listed_after_a_shipped_one(no_network: None) -> None:
    document = {"@context": [AS2, "https://example.com/ctx"], "type": "Note"}
    with pytest.raises(JsonLdError):
        expand(document)


def test_no_network_fixture_really_blocks_connections(no_network: None) -> None:
    # Without this the test below could pass while the network was reachable.
    with (
        pytest.raises(AssertionError, match="network access"),
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
    ):
        sock.connect(("127.0.0.1", 9))


def test_expanding_a_document_using_every_shipped_context_needs_no_network(
    no_network: None,
) -> None:
    # Each node carries its own context: data-integrity v1 and v2 protect the same terms
    # and cannot share one active context.
    nodes = [
        {"@context": url, "@id": f"https://a.example/{index}", **node}
        for index, (url, (node, _)) in enumerate(sorted(TERM_PER_CONTEXT.items()))
    ]
    expanded = expand({"@graph": nodes})
    by_id = {node["@id"]: node for entry in expanded for node in entry.get("@graph", [entry])}
    for index, (_, (_, iri)) in enumerate(sorted(TERM_PER_CONTEXT.items())):
        assert iri in by_id[f"https://a.example/{index}"], iri


def test_expand_uses_the_http_form_of_the_activitystreams_context(no_network: None) -> None:
    (expanded,) = expand({"@context": "http://www.w3.org/ns/activitystreams", "type": "Note"})
    assert expanded["@type"] == [f"{AS2}#Note"]
