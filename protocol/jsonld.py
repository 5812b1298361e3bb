"""JSON-LD processing against the contexts shipped in `protocol/contexts/`, never the network."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from pyld import jsonld

from protocol.errors import JsonLdError

# Context URL -> shipped file. Peers write some of these with http:// or a trailing slash.
_CONTEXT_FILES = {
    "https://www.w3.org/ns/activitystreams": "activitystreams.jsonld",
    "https://w3id.org/security/v1": "security-v1.jsonld",
    "https://w3id.org/security/multikey/v1": "multikey-v1.jsonld",
    "https://w3id.org/security/data-integrity/v1": "data-integrity-v1.jsonld",
    "https://w3id.org/security/data-integrity/v2": "data-integrity-v2.jsonld",
    "https://litepub.social/context.jsonld": "litepub-0.1.jsonld",
    "https://purl.archive.org/socialweb/webfinger": "webfinger.jsonld",
    "https://kith.social/ns/payments/v1": "kith-payments-v1.jsonld",
    "https://kith.social/ns/chats/v1": "kith-chats-v1.jsonld",
}


def shipped_context_urls() -> frozenset[str]:
    """The context URLs this node resolves offline."""
    return frozenset(_CONTEXT_FILES)


def _canonical(url: str) -> str:
    url = url.strip()
    if url.startswith("http://"):
        url = "https://" + url[len("http://") :]
    url = url.split("#", 1)[0]
    return url.rstrip("/")


@cache
def load_context(url: str) -> dict[str, Any]:
    """The shipped context document for `url`; JsonLdError if we do not ship it."""
    name = _CONTEXT_FILES.get(_canonical(url))
    if name is None:
        raise JsonLdError(f"context {url} is not shipped with Kith and is never fetched")
    text = resources.files("protocol").joinpath("contexts", name).read_text(encoding="utf-8")
    return json.loads(text)


def offline_document_loader(url: str, options: dict | None = None) -> dict[str, Any]:
    """A pyld document loader that answers from shipped files and refuses everything else."""
    try:
        document = load_context(url)
    except JsonLdError as exc:
        raise jsonld.JsonLdError(
            str(exc), "jsonld.LoadDocumentError", code="loading document failed"
        ) from None
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": document,
    }


def expand(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Expand a document with shipped contexts only; JsonLdError with the reason otherwise."""
    try:
        return jsonld.expand(document, {"documentLoader": offline_document_loader})
    except jsonld.JsonLdError as exc:
        raise JsonLdError(f"JSON-LD expansion failed: {exc}") from None
