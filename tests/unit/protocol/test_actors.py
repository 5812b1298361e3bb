"""Actor documents as Mastodon (publicKey) and FEP-521a (assertionMethod Multikey) read them."""

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from protocol.actors import ActorDocument, render_actor
from protocol.jsonld import expand
from protocol.multibase import decode_ed25519_multikey
from server.identity.keys import ActorKeys, generate_actor_keys

AS2 = "https://www.w3.org/ns/activitystreams"
SECURITY_V1 = "https://w3id.org/security/v1"
SEC = "https://w3id.org/security#"
ACTOR = "https://kith.example/users/alice"


@pytest.fixture(scope="module")
def keys() -> ActorKeys:
    return generate_actor_keys()


@pytest.fixture
def actor(keys: ActorKeys) -> ActorDocument:
    return ActorDocument(
        actor_id=ACTOR,
        actor_type="Person",
        preferred_username="alice",
        webfinger="alice@kith.example",
        inbox=f"{ACTOR}/inbox",
        outbox=f"{ACTOR}/outbox",
        followers=f"{ACTOR}/followers",
        following=f"{ACTOR}/following",
        shared_inbox="https://kith.example/inbox",
        profile_url="https://kith.example/@alice",
        rsa_public_pem=keys.rsa_public_pem,
        ed25519_public=keys.ed25519_public,
        published=datetime(2024, 3, 1, 12, 30, 45, 123456, tzinfo=UTC),
        name="Alice",
        summary_html="<p>Hi</p>",
        fields=(("Site", "https://alice.example"),),
    )


def test_context_names_activitystreams_and_security_v1_as_plain_strings(
    actor: ActorDocument,
) -> None:
    # Mastodon matches these context entries as exact strings.
    context = render_actor(actor)["@context"]
    assert isinstance(context, list)
    assert context[0] == AS2
    assert AS2 in context
    assert SECURITY_V1 in context


def test_actor_document_carries_identity_and_collections(actor: ActorDocument) -> None:
    document = render_actor(actor)
    assert document["id"] == ACTOR
    assert document["type"] == "Person"
    assert document["preferredUsername"] == "alice"
    assert document["inbox"] == f"{ACTOR}/inbox"
    assert document["outbox"] == f"{ACTOR}/outbox"
    assert document["followers"] == f"{ACTOR}/followers"
    assert document["following"] == f"{ACTOR}/following"
    assert document["endpoints"] == {"sharedInbox": "https://kith.example/inbox"}
    assert document["url"] == "https://kith.example/@alice"
    assert document["name"] == "Alice"
    assert document["summary"] == "<p>Hi</p>"
    assert document["webfinger"] == "alice@kith.example"


def test_public_key_is_the_actors_main_key(actor: ActorDocument) -> None:
    public_key = render_actor(actor)["publicKey"]
    assert public_key["id"] == f"{ACTOR}#main-key"
    assert public_key["owner"] == ACTOR


def test_public_key_pem_is_an_spki_rsa_key_of_at_least_2048_bits(actor: ActorDocument) -> None:
    pem = render_actor(actor)["publicKey"]["publicKeyPem"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    key = load_pem_public_key(pem.encode("ascii"))
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size >= 2048


def test_assertion_method_is_a_multikey_controlled_by_the_actor(
    actor: ActorDocument, keys: ActorKeys
) -> None:
    methods = render_actor(actor)["assertionMethod"]
    assert len(methods) == 1
    (method,) = methods
    assert method["type"] == "Multikey"
    assert method["controller"] == ACTOR
    assert method["id"].startswith(f"{ACTOR}#")
    assert method["id"] != f"{ACTOR}#main-key"
    assert decode_ed25519_multikey(method["publicKeyMultibase"]) == keys.ed25519_public


def test_published_is_utc_with_z_and_whole_seconds(actor: ActorDocument) -> None:
    assert render_actor(actor)["published"] == "2024-03-01T12:30:45Z"


def test_published_in_another_timezone_is_converted_to_utc(actor: ActorDocument) -> None:
    moment = datetime(2024, 3, 1, 14, 30, 45, tzinfo=timezone(timedelta(hours=2)))
    document = render_actor(dataclasses.replace(actor, published=moment))
    assert document["published"] == "2024-03-01T12:30:45Z"


def test_naive_published_datetime_is_refused(actor: ActorDocument) -> None:
    naive = dataclasses.replace(actor, published=datetime(2024, 3, 1, 12, 30, 45))
    with pytest.raises(ValueError, match="timezone"):
        render_actor(naive)


@pytest.mark.parametrize("actor_type", ["Note", "person", "", "Actor"])
def test_unknown_actor_type_is_refused(actor: ActorDocument, actor_type: str) -> None:
    with pytest.raises(ValueError, match="not an actor type"):
        render_actor(dataclasses.replace(actor, actor_type=actor_type))


@pytest.mark.parametrize("actor_type", ["Application", "Group", "Organization", "Service"])
def test_every_as2_actor_type_renders(actor: ActorDocument, actor_type: str) -> None:
    assert render_actor(dataclasses.replace(actor, actor_type=actor_type))["type"] == actor_type


def test_profile_fields_become_property_values(actor: ActorDocument) -> None:
    assert render_actor(actor)["attachment"] == [
        {"type": "PropertyValue", "name": "Site", "value": "https://alice.example"}
    ]


def test_featured_collections_appear_only_when_set(actor: ActorDocument) -> None:
    plain = render_actor(actor)
    assert "featured" not in plain
    assert "featuredTags" not in plain
    featured = render_actor(
        dataclasses.replace(
            actor, featured=f"{ACTOR}/collections/featured", featured_tags=f"{ACTOR}/tags"
        )
    )
    assert featured["featured"] == f"{ACTOR}/collections/featured"
    assert featured["featuredTags"] == f"{ACTOR}/tags"


def test_flags_are_rendered_as_booleans(actor: ActorDocument) -> None:
    document = render_actor(
        dataclasses.replace(actor, manually_approves_followers=True, discoverable=True)
    )
    assert document["manuallyApprovesFollowers"] is True
    assert document["discoverable"] is True
    assert document["indexable"] is False


# --- JSON-LD: what a processor, not a JSON reader, sees ---------------------------------


def _nodes(value: object) -> list[dict]:
    """Every JSON object inside an expanded document, depth first."""
    if isinstance(value, list):
        return [node for item in value for node in _nodes(item)]
    if isinstance(value, dict):
        return [value, *(node for item in value.values() for node in _nodes(item))]
    return []


def test_actor_expands_offline_with_its_id_and_type(actor: ActorDocument) -> None:
    (expanded,) = expand(render_actor(actor))
    assert expanded["@id"] == ACTOR
    assert expanded["@type"] == [f"{AS2}#Person"]
    assert expanded[f"{AS2}#preferredUsername"] == [{"@value": "alice"}]


def test_expanded_actor_keeps_the_security_public_key(
    actor: ActorDocument, keys: ActorKeys
) -> None:
    (expanded,) = expand(render_actor(actor))
    (public_key,) = expanded[f"{SEC}publicKey"]
    assert public_key["@id"] == f"{ACTOR}#main-key"
    assert public_key[f"{SEC}owner"] == [{"@id": ACTOR}]
    assert public_key[f"{SEC}publicKeyPem"] == [{"@value": keys.rsa_public_pem}]


def test_expanded_actor_keeps_the_multikey_public_key_multibase(
    actor: ActorDocument, keys: ActorKeys
) -> None:
    (expanded,) = expand(render_actor(actor))
    multikeys = [node for node in _nodes(expanded) if f"{SEC}Multikey" in node.get("@type", [])]
    assert len(multikeys) == 1
    (multikey,) = multikeys
    assert multikey[f"{SEC}controller"] == [{"@id": ACTOR}]
    (value,) = multikey[f"{SEC}publicKeyMultibase"]
    assert value["@type"] == f"{SEC}multibase"
    assert decode_ed25519_multikey(value["@value"]) == keys.ed25519_public


def test_expanded_actor_keeps_the_shared_inbox(actor: ActorDocument) -> None:
    (expanded,) = expand(render_actor(actor))
    (endpoints,) = expanded[f"{AS2}#endpoints"]
    assert endpoints[f"{AS2}#sharedInbox"] == [{"@id": "https://kith.example/inbox"}]
