"""Reading ActivityStreams JSON as peers write it: a value may be a string, an object or a list."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from protocol.errors import ProtocolError

URL_LENGTH_MAX = 2048


def as_list(value: Any) -> list[Any]:
    """A property's values as a list (absent: empty; a single value: one item)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def id_of(value: Any) -> str | None:
    """The id of a reference: the string itself, or an embedded object's `id`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def ids_of(value: Any) -> list[str]:
    """The ids of every reference in a property (`to`, `cc`, `alsoKnownAs`, …)."""
    return [found for item in as_list(value) if (found := id_of(item)) is not None]


def url_of(value: Any) -> str | None:
    """The first http(s) URL of a `url`/`icon`-style property (string, Link, Image or list)."""
    for item in as_list(value):
        if isinstance(item, str) and is_http_url(item):
            return item
        if isinstance(item, dict):
            for key in ("href", "url"):
                found = url_of(item.get(key))
                if found:
                    return found
    return None


def text_of(value: Any, limit: int) -> str:
    """A string property, or '' when it is absent or not a string; cut at `limit`."""
    return value[:limit] if isinstance(value, str) else ""


def is_http_url(value: Any) -> bool:
    """Whether a value is an absolute http(s) URL of a sane length."""
    if not isinstance(value, str) or len(value) > URL_LENGTH_MAX:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def require_url(document: dict[str, Any], key: str) -> str:
    """A required URL-valued property; ProtocolError naming it otherwise."""
    value = id_of(document.get(key))
    if not is_http_url(value):
        raise ProtocolError(f"{key} must be an http(s) URL")
    return value  # type: ignore[return-value]


def host_of(url: str) -> str:
    """host[:port] of a URL, lower-cased: the unit of origin for FEP-fe34 checks."""
    return urlsplit(url).netloc.lower()


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme and authority."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc.lower()) == (pb.scheme, pb.netloc.lower())
