"""Reading peers' actor documents: Mastodon's and GoToSocial's shapes, and forged keys."""

from __future__ import annotations

import copy

import pytest

from protocol.actors import parse_actor
from protocol.errors import ProtocolError
from protocol.multibase import encode_ed25519_multikey

PEM = "-----BEGIN PUBLIC KEY-----\nMIIB...\n-----END PUBLIC KEY-----\n"
MULTIKEY = encode_ed25519_multikey(bytes(range(32)))

# The shape Mastodon 4.x serves (docs: spec/activitypub "Profile federation").
MASTODON_ACTOR = {
    "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
    "id": "https://mastodon.example/users/Gargron",
    "type": "Person",
    "following": "https://mastodon.example/users/Gargron/following",
    "followers": "https://mastodon.example/users/Gargron/followers",
    "inbox": "https://mastodon.example/users/Gargron/inbox",
    "outbox": "https://mastodon.example/users/Gargron/outbox",
    "preferredUsername": "Gargron",
    "name": "Eugen",
    "summary": "<p>Founder</p>",
    "url": "https://mastodon.example/@Gargron",
    "manuallyApprovesFollowers": False,
    "discoverable": True,
    "publicKey": {
        "id": "https://mastodon.example/users/Gargron#main-key",
        "owner": "https://mastodon.example/users/Gargron",
        "publicKeyPem": PEM,
    },
    "endpoints": {"sharedInbox": "https://mastodon.example/inbox"},
    "icon": {"type": "Image", "mediaType": "image/png", "url": "https://files.example/a.png"},
    "alsoKnownAs": ["https://old.example/users/gargron"],
}


def test_a_mastodon_actor_is_read_with_its_key_and_shared_inbox() -> None:
    actor = parse_actor(MASTODON_ACTOR)
    assert actor.actor_id == "https://mastodon.example/users/Gargron"
    assert actor.preferred_username == "Gargron"
    assert actor.shared_inbox == "https://mastodon.example/inbox"
    assert actor.followers == "https://mastodon.example/users/Gargron/followers"
    assert actor.icon_url == "https://files.example/a.png"
    assert actor.also_known_as == ("https://old.example/users/gargron",)
    assert [(k.key_id, k.algorithm) for k in actor.keys] == [
        ("https://mastodon.example/users/Gargron#main-key", "rsa")
    ]


def test_a_gotosocial_style_key_id_and_a_multikey_are_read() -> None:
    document = copy.deepcopy(MASTODON_ACTOR)
    document["publicKey"]["id"] = "https://mastodon.example/users/Gargron/main-key"
    document["assertionMethod"] = [
        {
            "id": "https://mastodon.example/users/Gargron#ed25519-key",
            "type": "Multikey",
            "controller": "https://mastodon.example/users/Gargron",
            "publicKeyMultibase": MULTIKEY,
        }
    ]
    keys = {k.key_id: k.algorithm for k in parse_actor(document).keys}
    assert keys == {
        "https://mastodon.example/users/Gargron/main-key": "rsa",
        "https://mastodon.example/users/Gargron#ed25519-key": "ed25519",
    }


@pytest.mark.parametrize(
    "forgery",
    [
        {"owner": "https://other.example/users/eve"},
        {"id": "https://other.example/keys/1"},
    ],
)
def test_keys_owned_by_someone_else_or_on_another_origin_are_ignored(forgery: dict) -> None:
    document = copy.deepcopy(MASTODON_ACTOR)
    document["publicKey"].update(forgery)
    assert parse_actor(document).keys == ()


def test_a_multikey_that_is_not_ed25519_is_ignored() -> None:
    document = copy.deepcopy(MASTODON_ACTOR)
    document["assertionMethod"] = {
        "id": "https://mastodon.example/users/Gargron#k",
        "type": "Multikey",
        "controller": "https://mastodon.example/users/Gargron",
        "publicKeyMultibase": "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
    }
    assert [k.algorithm for k in parse_actor(document).keys] == ["rsa"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": "Note"}, "not an actor type"),
        ({"preferredUsername": None}, "preferredUsername"),
        ({"preferredUsername": ""}, "preferredUsername"),
        ({"inbox": "ftp://x/inbox"}, "inbox"),
        ({"inbox": None}, "inbox"),
        ({"id": "not a url"}, "id"),
    ],
)
def test_invalid_actor_documents_are_refused_with_the_reason(change: dict, reason: str) -> None:
    document = {**MASTODON_ACTOR, **change}
    with pytest.raises(ProtocolError, match=reason):
        parse_actor(document)


def test_optional_fields_of_the_wrong_shape_are_ignored() -> None:
    document = {
        **MASTODON_ACTOR,
        "endpoints": "nope",
        "url": [{"type": "Link", "href": "https://mastodon.example/@Gargron"}],
        "name": ["not", "a", "string"],
        "movedTo": 42,
        "manuallyApprovesFollowers": "yes",
    }
    actor = parse_actor(document)
    assert actor.shared_inbox is None
    assert actor.profile_url == "https://mastodon.example/@Gargron"
    assert actor.name == ""
    assert actor.moved_to is None
    assert actor.manually_approves_followers is False
