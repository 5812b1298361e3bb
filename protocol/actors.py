"""Actor documents (Person, Service, Application) as Mastodon and FEP-521a expect them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from protocol.as2 import (
    as_list,
    id_of,
    ids_of,
    is_http_url,
    require_url,
    same_origin,
    text_of,
    url_of,
)
from protocol.errors import InvalidKey, ProtocolError
from protocol.multibase import decode_ed25519_multikey, encode_ed25519_multikey
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
    also_known_as: tuple[str, ...] = ()
    moved_to: str | None = None
    # Extra `endpoints` for C2S clients: oauthAuthorizationEndpoint, oauthTokenEndpoint, proxyUrl.
    client_endpoints: tuple[tuple[str, str], ...] = ()
    # Every Ed25519 key the actor has published, (fragment, public key), the one it signs with
    # now first: proofs made with an older key still verify after a rotation. Empty: just
    # `ed25519_public` under ED25519_KEY_FRAGMENT.
    ed25519_keys: tuple[tuple[str, bytes], ...] = ()
    # The profile picture: its URL and media type (AS2 `icon`), when there is one.
    icon: tuple[str, str] | None = None
    # Pleroma's `capabilities.acceptsChatMessages`: Pleroma sends ChatMessages only to actors
    # that say they take them.
    accepts_chat_messages: bool = False


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
        "endpoints": {"sharedInbox": actor.shared_inbox, **dict(actor.client_endpoints)},
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
                "id": f"{actor.actor_id}#{fragment}",
                "type": "Multikey",
                "controller": actor.actor_id,
                "publicKeyMultibase": encode_ed25519_multikey(public),
            }
            for fragment, public in actor.ed25519_keys
            or ((ED25519_KEY_FRAGMENT, actor.ed25519_public),)
        ],
        "tag": [],
        "attachment": [
            {"type": "PropertyValue", "name": name, "value": value} for name, value in actor.fields
        ],
    }
    if actor.accepts_chat_messages:
        document["capabilities"] = {"acceptsChatMessages": True}
    if actor.icon is not None:
        document["icon"] = {"type": "Image", "url": actor.icon[0], "mediaType": actor.icon[1]}
    if actor.also_known_as:
        document["alsoKnownAs"] = list(actor.also_known_as)
    if actor.moved_to:
        document["movedTo"] = actor.moved_to
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


@dataclass(frozen=True)
class RemoteKey:
    """A public key an actor publishes: RSA for HTTP Signatures, Ed25519 for object proofs."""

    key_id: str
    algorithm: str  # "rsa" (SPKI PEM) or "ed25519" (multibase)
    public_key: str


@dataclass(frozen=True)
class RemoteActor:
    """What Kith reads from a peer's actor document."""

    actor_id: str
    actor_type: str
    preferred_username: str
    inbox: str
    shared_inbox: str | None
    outbox: str | None
    followers: str | None
    following: str | None
    profile_url: str | None
    name: str
    summary_html: str
    icon_url: str | None
    manually_approves_followers: bool
    discoverable: bool
    also_known_as: tuple[str, ...]
    moved_to: str | None
    keys: tuple[RemoteKey, ...]


_NAME_LENGTH_MAX = 500
_SUMMARY_LENGTH_MAX = 20_000


def parse_actor(document: dict) -> RemoteActor:
    """Validate a fetched actor document; ProtocolError names the first problem.

    Keys are kept only when their owner/controller is this actor and they live on its
    origin (FEP-fe34): a document cannot claim someone else's key.
    """
    actor_id = require_url(document, "id")
    actor_type = document.get("type")
    if actor_type not in ACTOR_TYPES:
        raise ProtocolError(f"{actor_type!r} is not an actor type")
    username = document.get("preferredUsername")
    if not isinstance(username, str) or not username.strip() or len(username) > 255:
        raise ProtocolError("preferredUsername is missing")
    endpoints = document.get("endpoints") if isinstance(document.get("endpoints"), dict) else {}
    shared_inbox = id_of(endpoints.get("sharedInbox"))
    return RemoteActor(
        actor_id=actor_id,
        actor_type=actor_type,
        preferred_username=username,
        inbox=require_url(document, "inbox"),
        shared_inbox=shared_inbox if is_http_url(shared_inbox) else None,
        outbox=_optional_url(document, "outbox"),
        followers=_optional_url(document, "followers"),
        following=_optional_url(document, "following"),
        profile_url=url_of(document.get("url")),
        name=text_of(document.get("name"), _NAME_LENGTH_MAX),
        summary_html=text_of(document.get("summary"), _SUMMARY_LENGTH_MAX),
        icon_url=url_of(document.get("icon")),
        manually_approves_followers=document.get("manuallyApprovesFollowers") is True,
        discoverable=document.get("discoverable") is True,
        also_known_as=tuple(u for u in ids_of(document.get("alsoKnownAs")) if is_http_url(u)),
        moved_to=_optional_url(document, "movedTo"),
        keys=tuple(_keys(document, actor_id)),
    )


def _optional_url(document: dict, key: str) -> str | None:
    value = id_of(document.get(key))
    return value if is_http_url(value) else None


def _keys(document: dict, actor_id: str) -> list[RemoteKey]:
    keys = []
    for entry in as_list(document.get("publicKey")):
        if not isinstance(entry, dict):
            continue
        key_id, pem = entry.get("id"), entry.get("publicKeyPem")
        if id_of(entry.get("owner")) != actor_id or not isinstance(pem, str):
            continue
        if is_http_url(key_id) and same_origin(key_id, actor_id):
            keys.append(RemoteKey(key_id=key_id, algorithm="rsa", public_key=pem))
    for entry in as_list(document.get("assertionMethod")):
        if not isinstance(entry, dict) or entry.get("type") != "Multikey":
            continue
        key_id, value = entry.get("id"), entry.get("publicKeyMultibase")
        if id_of(entry.get("controller")) != actor_id or not isinstance(value, str):
            continue
        if is_http_url(key_id) and same_origin(key_id, actor_id) and _is_ed25519(value):
            keys.append(RemoteKey(key_id=key_id, algorithm="ed25519", public_key=value))
    return keys


def _is_ed25519(multibase: str) -> bool:
    try:
        decode_ed25519_multikey(multibase)
    except InvalidKey:
        return False
    return True
