"""ActivityStreams and discovery vocabulary shared by every document Kith emits or reads."""

AS2_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_V1_CONTEXT = "https://w3id.org/security/v1"
MULTIKEY_V1_CONTEXT = "https://w3id.org/security/multikey/v1"
DATA_INTEGRITY_V1_CONTEXT = "https://w3id.org/security/data-integrity/v1"

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
# Peers that compact JSON-LD send these forms of the Public collection (bovine, Akkoma).
PUBLIC_ALIASES = frozenset({PUBLIC, "as:Public", "Public"})

AS2_MEDIA_TYPE = "application/activity+json"
LD_MEDIA_TYPE = "application/ld+json"
AS2_PROFILE_MEDIA_TYPE = f'{LD_MEDIA_TYPE}; profile="{AS2_CONTEXT}"'
JRD_MEDIA_TYPE = "application/jrd+json"
XRD_MEDIA_TYPE = "application/xrd+xml"

ACTOR_TYPES = frozenset({"Application", "Group", "Organization", "Person", "Service"})

# Terms Mastodon and friends read from actors, declared inline as Mastodon does so that
# JSON-LD consumers and plain-JSON consumers read the same document.
ACTOR_EXTENSION_TERMS: dict[str, object] = {
    "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
    "alsoKnownAs": {"@id": "as:alsoKnownAs", "@type": "@id"},
    "movedTo": {"@id": "as:movedTo", "@type": "@id"},
    "toot": "http://joinmastodon.org/ns#",
    "featured": {"@id": "toot:featured", "@type": "@id"},
    "featuredTags": {"@id": "toot:featuredTags", "@type": "@id"},
    "discoverable": "toot:discoverable",
    "indexable": "toot:indexable",
    "memorial": "toot:memorial",
    "suspended": "toot:suspended",
    "schema": "http://schema.org#",
    "PropertyValue": "schema:PropertyValue",
    "value": "schema:value",
    # FEP-521a: neither AS2 nor security/v1 defines it, and AS2's "@vocab": "_:" would
    # otherwise turn it into a blank-node predicate that RDF consumers drop.
    "assertionMethod": {"@id": "https://w3id.org/security#assertionMethod", "@type": "@id"},
    "litepub": "http://litepub.social/ns#",
    "capabilities": "litepub:capabilities",
    "acceptsChatMessages": "litepub:acceptsChatMessages",
    "webfinger": {
        "@id": "https://purl.archive.org/socialweb/webfinger#webfinger",
        "@type": "http://www.w3.org/2001/XMLSchema#string",
    },
}
