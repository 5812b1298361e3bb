"""Actor documents and collections as peers fetch them, and the profile pages browsers get."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy import select

from protocol.jsonld import expand
from protocol.multibase import decode_ed25519_multikey
from server.storage.tables import account_keys
from tests.harness import Node
from tests.integration.support import (
    AS2,
    AS2_CONTEXT,
    AS2_MEDIA_TYPE,
    LD_AS2,
    LD_AS2_MEDIA_TYPE,
    mark_deleted,
)

SECURITY = "https://w3id.org/security#"
COLLECTIONS = ("outbox", "followers", "following", "collections/featured", "collections/tags")
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def fetch_actor(node: Node, path: str, headers: dict[str, str] = AS2) -> tuple[dict, str]:
    async with node.http.get(path, headers=headers, allow_redirects=False) as response:
        assert response.status == 200
        text = await response.text()
        return await response.json(content_type=None), text


async def stored_keys(node: Node, username: str):
    async with node.db.read() as conn:
        result = await conn.execute(
            select(account_keys).where(account_keys.c.account_id == node.users[username].id)
        )
        return result.one()


@pytest.fixture
async def alice_node(node: Node) -> Node:
    await node.create_user("alice", display_name="Alice")
    return node


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (AS2_MEDIA_TYPE, AS2_MEDIA_TYPE),
        (LD_AS2_MEDIA_TYPE, LD_AS2_MEDIA_TYPE),
        ("application/ld+json", LD_AS2_MEDIA_TYPE),
        ("application/json", AS2_MEDIA_TYPE),
        (f"{AS2_MEDIA_TYPE}, {LD_AS2_MEDIA_TYPE}", AS2_MEDIA_TYPE),
    ],
    ids=["activity_json", "ld_json_profile", "ld_json_bare", "plain_json", "mastodon_accept"],
)
async def test_actor_content_type_matches_the_accepted_as2_flavour(
    alice_node: Node, accept: str, media_type: str
) -> None:
    async with alice_node.http.get("/users/alice", headers={"Accept": accept}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == media_type
        assert response.headers["Vary"] == "Accept"
        body = await response.json(content_type=None)
    assert body["id"] == alice_node.url("/users/alice")


async def test_actor_document_has_every_field_mastodon_requires(alice_node: Node) -> None:
    node = alice_node
    actor, _ = await fetch_actor(node, "/users/alice")
    actor_id = node.url("/users/alice")
    context = actor["@context"]
    assert AS2_CONTEXT in (context if isinstance(context, list) else [context])
    assert actor["type"] == "Person"
    assert actor["preferredUsername"] == "alice"
    assert actor["id"] == actor_id
    assert actor["inbox"] == f"{actor_id}/inbox"
    assert actor["outbox"] == f"{actor_id}/outbox"
    assert actor["followers"] == f"{actor_id}/followers"
    assert actor["following"] == f"{actor_id}/following"
    assert actor["endpoints"]["sharedInbox"] == node.url("/inbox")
    for url in (actor["inbox"], actor["outbox"], actor["followers"], actor["following"]):
        parts = urlsplit(url)
        assert parts.scheme == "http"
        assert parts.netloc == node.domain
    assert actor["publicKey"]["id"] == f"{actor_id}#main-key"
    assert actor["publicKey"]["owner"] == actor_id
    assert actor["name"] == "Alice"
    assert actor["url"] == node.url("/@alice")


async def test_actor_public_key_is_spki_pem_rsa_of_at_least_2048_bits(alice_node: Node) -> None:
    actor, _ = await fetch_actor(alice_node, "/users/alice")
    pem = actor["publicKey"]["publicKeyPem"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert "BEGIN RSA PUBLIC KEY" not in pem
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size >= 2048


async def test_actor_public_key_verifies_signature_of_stored_private_key(
    alice_node: Node,
) -> None:
    actor, _ = await fetch_actor(alice_node, "/users/alice")
    public_key = serialization.load_pem_public_key(
        actor["publicKey"]["publicKeyPem"].encode("ascii")
    )
    row = await stored_keys(alice_node, "alice")
    private_key = serialization.load_pem_private_key(row.rsa_private_pem.encode(), password=None)
    message = b"(request-target): get /users/bob\nhost: example.com\ndate: today"
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public_key.verify(signature, message + b"!", padding.PKCS1v15(), hashes.SHA256())


async def test_actor_multikey_is_stored_ed25519_key_and_verifies_its_signatures(
    alice_node: Node,
) -> None:
    actor, _ = await fetch_actor(alice_node, "/users/alice")
    actor_id = alice_node.url("/users/alice")
    (method,) = actor["assertionMethod"]
    assert method["type"] == "Multikey"
    assert method["controller"] == actor_id
    assert method["id"].startswith(f"{actor_id}#")
    public = decode_ed25519_multikey(method["publicKeyMultibase"])
    row = await stored_keys(alice_node, "alice")
    assert public == bytes(row.ed25519_public)
    signed = SigningKey(bytes(row.ed25519_seed)).sign(b"an integrity proof")
    assert VerifyKey(public).verify(signed) == b"an integrity proof"


async def test_actor_document_contains_no_private_key_material(alice_node: Node) -> None:
    _, text = await fetch_actor(alice_node, "/users/alice")
    row = await stored_keys(alice_node, "alice")
    assert "PRIVATE" not in text
    assert base64.b64encode(bytes(row.ed25519_seed)).decode() not in text
    assert bytes(row.ed25519_seed).hex() not in text


async def test_actor_public_key_survives_json_ld_expansion(alice_node: Node) -> None:
    """Without security/v1 in @context, JSON-LD consumers lose publicKey."""
    actor, _ = await fetch_actor(alice_node, "/users/alice")
    (expanded,) = expand(actor)
    assert f"{SECURITY}publicKey" in expanded
    assert expanded["@type"] == ["https://www.w3.org/ns/activitystreams#Person"]


async def test_bot_actor_is_a_service(node: Node) -> None:
    await node.create_user("newsbot", is_bot=True)
    actor, _ = await fetch_actor(node, "/users/newsbot")
    assert actor["type"] == "Service"
    assert actor["preferredUsername"] == "newsbot"


async def test_instance_actor_is_an_unsigned_fetchable_application(node: Node) -> None:
    actor, text = await fetch_actor(node, "/actor")
    actor_id = node.url("/actor")
    assert actor["id"] == actor_id
    assert actor["type"] == "Application"
    assert actor["preferredUsername"] == node.domain
    assert actor["inbox"].startswith(actor_id)
    assert actor["endpoints"]["sharedInbox"] == node.url("/inbox")
    assert actor["publicKey"]["id"] == f"{actor_id}#main-key"
    assert actor["publicKey"]["owner"] == actor_id
    key = serialization.load_pem_public_key(actor["publicKey"]["publicKeyPem"].encode())
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size >= 2048
    assert "PRIVATE" not in text


async def test_instance_actor_has_ld_json_flavour_too(node: Node) -> None:
    async with node.http.get("/actor", headers=LD_AS2) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == LD_AS2_MEDIA_TYPE


@pytest.mark.parametrize(
    "accept",
    ["text/html", "*/*", None, BROWSER_ACCEPT],
    ids=["text_html", "any", "no_accept", "firefox"],
)
async def test_actor_url_redirects_browsers_to_profile_page(
    alice_node: Node, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    async with alice_node.http.get(
        "/users/alice",
        headers=headers,
        skip_auto_headers=["Accept"],
        allow_redirects=False,
    ) as response:
        assert response.status == 302
        assert response.headers["Location"] == alice_node.url("/@alice")
        assert "Accept" in response.headers["Vary"]


async def test_profile_page_is_html_with_csp_and_escaped_display_name(node: Node) -> None:
    await node.create_user("mallory", display_name="<script>alert(1)</script>")
    async with node.http.get("/users/mallory", headers={"Accept": "text/html"}) as response:
        assert response.status == 200  # after following the redirect
        assert str(response.url) == node.url("/@mallory")
        assert response.content_type == "text/html"
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "'unsafe-inline'" not in csp
        html = await response.text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f"mallory@{node.domain}" in html


async def test_profile_page_links_to_actor_for_discovery(alice_node: Node) -> None:
    async with alice_node.http.get("/@alice", headers={"Accept": "text/html"}) as response:
        html = await response.text()
    assert f'type="application/activity+json" href="{alice_node.url("/users/alice")}"' in html


@pytest.mark.parametrize("headers", [AS2, LD_AS2], ids=["activity_json", "ld_json"])
async def test_profile_page_asked_for_as2_redirects_to_actor_id(
    alice_node: Node, headers: dict[str, str]
) -> None:
    async with alice_node.http.get("/@alice", headers=headers, allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == alice_node.url("/users/alice")


async def test_actor_with_unacceptable_accept_is_406_json(alice_node: Node) -> None:
    async with alice_node.http.get("/users/alice", headers={"Accept": "image/png"}) as response:
        assert response.status == 406
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["error"]


async def test_unknown_actor_is_404_json(alice_node: Node) -> None:
    async with alice_node.http.get("/users/nobody", headers=AS2) as response:
        assert response.status == 404
        assert response.content_type == "application/json"
        assert (await response.json())["error"]


async def test_unknown_profile_page_is_404(alice_node: Node) -> None:
    async with alice_node.http.get("/@nobody", headers={"Accept": "text/html"}) as response:
        assert response.status == 404


async def test_deleted_actor_is_410_tombstone_with_former_type(alice_node: Node) -> None:
    node = alice_node
    await mark_deleted(node, "alice")
    async with node.http.get("/users/alice", headers=AS2) as response:
        assert response.status == 410
        assert response.headers["Content-Type"] == AS2_MEDIA_TYPE
        body = await response.json(content_type=None)
    assert body["type"] == "Tombstone"
    assert body["formerType"] == "Person"
    assert body["id"] == node.url("/users/alice")
    assert AS2_CONTEXT in (
        body["@context"] if isinstance(body["@context"], list) else [body["@context"]]
    )
    assert "publicKey" not in body


async def test_deleted_bot_tombstone_keeps_service_as_former_type(node: Node) -> None:
    await node.create_user("newsbot", is_bot=True)
    await mark_deleted(node, "newsbot")
    async with node.http.get("/users/newsbot", headers=LD_AS2) as response:
        assert response.status == 410
        assert response.headers["Content-Type"] == LD_AS2_MEDIA_TYPE
        assert (await response.json(content_type=None))["formerType"] == "Service"


async def test_deleted_account_profile_page_is_410_html(alice_node: Node) -> None:
    await mark_deleted(alice_node, "alice")
    async with alice_node.http.get("/@alice", headers={"Accept": "text/html"}) as response:
        assert response.status == 410
        assert response.content_type == "text/html"
        assert "Content-Security-Policy" in response.headers


async def test_instance_actor_is_not_served_under_the_users_path(node: Node) -> None:
    """Its id is /actor; a second URL with another id would fail Mastodon's id check."""
    async with node.http.get("/users/instance.actor", headers=AS2) as response:
        assert response.status == 404


@pytest.mark.parametrize("owner", ["/users/alice", "/actor"])
@pytest.mark.parametrize("name", COLLECTIONS)
async def test_collection_is_ordered_collection_with_first_page(
    alice_node: Node, owner: str, name: str
) -> None:
    url = alice_node.url(f"{owner}/{name}")
    async with alice_node.http.get(url, headers=AS2) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == AS2_MEDIA_TYPE
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        collection = await response.json(content_type=None)
    assert collection["@context"] == AS2_CONTEXT
    assert collection["id"] == url
    assert collection["type"] == "OrderedCollection"
    assert isinstance(collection["totalItems"], int)
    assert collection["totalItems"] >= 0
    assert collection["first"] == f"{url}?page=true"

    async with alice_node.http.get(collection["first"], headers=LD_AS2) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == LD_AS2_MEDIA_TYPE
        page = await response.json(content_type=None)
    assert page["type"] == "OrderedCollectionPage"
    assert page["id"] == collection["first"]
    assert page["partOf"] == url
    assert isinstance(page["orderedItems"], list)
    assert page["totalItems"] == collection["totalItems"]


async def test_actor_document_links_resolve_to_its_collections(alice_node: Node) -> None:
    actor, _ = await fetch_actor(alice_node, "/users/alice")
    for key in ("outbox", "followers", "following", "featured", "featuredTags"):
        async with alice_node.http.get(actor[key], headers=AS2) as response:
            assert response.status == 200, key
            assert (await response.json(content_type=None))["id"] == actor[key]


async def test_collections_of_deleted_actor_are_410(alice_node: Node) -> None:
    await mark_deleted(alice_node, "alice")
    for name in COLLECTIONS:
        async with alice_node.http.get(f"/users/alice/{name}", headers=AS2) as response:
            assert response.status == 410, name
            assert (await response.json())["error"]


async def test_collections_of_unknown_actor_are_404(alice_node: Node) -> None:
    for name in COLLECTIONS:
        async with alice_node.http.get(f"/users/nobody/{name}", headers=AS2) as response:
            assert response.status == 404, name
            assert (await response.json())["error"]
