"""Actor documents (Person, Service, Application) as Mastodon and FEP-521a expect them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from protocol.multibase import encode_ed25519_multikey
from protocol.vocab import (
    ACTOR_EXTENSION_TERMS,
    ACTOR_TYPES,
    AS2_CONTEXT,
    MULTIKEY_V1_CONTEXT,
    SECURITY_V1_CONTEXT,
)

RSA_KEY_FRAGMENT = "main-key"
ED25519_KEY_FRAGMENT = "ed25519-key"


@dataclass(frozen=True)
class ActorDocument:
    """Everything an actor document says, already resolved to absolute URLs."""

    actor_id: str
    actor_type: str
    preferred_username: str
    webfinger: str
    inbox: str
    outbox: str
    followers: str
    following: str
    shared_inbox: str
    profile_url: str
    rsa_public_pem: str
    ed25519_public: bytes
    published: datetime
    name: str = ""
    summary_html: str = ""
    manually_approves_followers: bool = False
    discoverable: bool = False
    indexable: bool = False
    featured: str | None = None
    featured_tags: str | None = None
    fields: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def actor_context() -> list:
    """The `@context` of actor documents: AS2, security/v1 (publicKey), multikey, inline terms."""
    return [AS2_CONTEXT, SECURITY_V1_CONTEXT, MULTIKEY_V1_CONTEXT, dict(ACTOR_EXTENSION_TERMS)]


def render_actor(actor: ActorDocument) -> dict:
    """The AS2 JSON of an actor, with the RSA key for HTTP Signatures and a Multikey for proofs."""
    if actor.actor_type not in ACTOR_TYPES:
        raise ValueError(f"{actor.actor_type!r} is not an actor type")
    document: dict = {
        "@context": actor_context(),
        "id": actor.actor_id,
        "type": actor.actor_type,
        "preferredUsername": actor.preferred_username,
        "name": actor.name,
        "summary": actor.summary_html,
        "url": actor.profile_url,
        "inbox": actor.inbox,
        "outbox": actor.outbox,
        "followers": actor.followers,
        "following": actor.following,
        "endpoints": {"sharedInbox": actor.shared_inbox},
        "manuallyApprovesFollowers": actor.manually_approves_followers,
        "discoverable": actor.discoverable,
        "indexable": actor.indexable,
        "memorial": False,
        "published": format_datetime(actor.published),
        "webfinger": actor.webfinger,
        "publicKey": {
            "id": f"{actor.actor_id}#{RSA_KEY_FRAGMENT}",
            "owner": actor.actor_id,
            "publicKeyPem": actor.rsa_public_pem,
        },
        "assertionMethod": [
            {
                "id": f"{actor.actor_id}#{ED25519_KEY_FRAGMENT}",
                "type": "Multikey",
                "controller": actor.actor_id,
                "publicKeyMultibase": encode_ed25519_multikey(actor.ed25519_public),
            }
        ],
        "tag": [],
        "attachment": [
            {"type": "PropertyValue", "name": name, "value": value} for name, value in actor.fields
        ],
    }
    if actor.featured:
        document["featured"] = actor.featured
    if actor.featured_tags:
        document["featuredTags"] = actor.featured_tags
    return document


def format_datetime(moment: datetime) -> str:
    """An xsd:dateTime in UTC with a Z suffix and whole seconds, as Mastodon writes them."""
    if moment.tzinfo is None:
        raise ValueError("datetimes on the wire must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
