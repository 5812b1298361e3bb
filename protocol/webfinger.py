"""WebFinger (RFC 7033) resource parsing and JRD documents."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from protocol.errors import InvalidResource
from protocol.vocab import AS2_MEDIA_TYPE

PROFILE_PAGE_REL = "http://webfinger.net/rel/profile-page"
SELF_REL = "self"
RESOURCE_LENGTH_MAX = 1024


@dataclass(frozen=True)
class AcctResource:
    """`acct:user@host` (or the bare `user@host` form many clients send)."""

    username: str
    host: str


@dataclass(frozen=True)
class UrlResource:
    """An `http(s)` URL naming an actor or profile page."""

    url: str
    host: str
    path: str


def parse_resource(resource: str | None) -> AcctResource | UrlResource:
    """Parse a WebFinger `resource` parameter; raise InvalidResource with the reason."""
    if resource is None or not resource.strip():
        raise InvalidResource("the resource parameter is required")
    if len(resource) > RESOURCE_LENGTH_MAX:
        raise InvalidResource("the resource parameter is too long")
    resource = resource.strip()
    lowered = resource.lower()
    if lowered.startswith(("http://", "https://")):
        return _parse_url(resource)
    if lowered.startswith("acct:"):
        resource = resource[5:]
    return _parse_acct(unquote(resource))


def _parse_acct(value: str) -> AcctResource:
    value = value.lstrip("@")
    username, at, host = value.rpartition("@")
    if not at or not username or not host:
        raise InvalidResource("an acct resource must look like acct:user@host")
    if any(ch in value for ch in "/?#") or any(ch.isspace() for ch in value):
        raise InvalidResource("an acct resource must look like acct:user@host")
    return AcctResource(username=username, host=normalize_host(host))


def _parse_url(url: str) -> UrlResource:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidResource(f"the resource URL is malformed: {exc}") from None
    if not parts.hostname:
        raise InvalidResource("the resource URL has no host")
    host = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return UrlResource(url=url, host=normalize_host(host), path=parts.path or "/")


def normalize_host(host: str) -> str:
    """Lower-case a host[:port] and turn internationalised names into their ASCII form."""
    host = host.strip().rstrip(".").lower()
    name, sep, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if sep and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise InvalidResource("the host's port is not a number between 1 and 65535")
    try:
        ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        raise InvalidResource("the host is not a valid domain name") from None
    if not ascii_name or any(ch in ascii_name for ch in "/\\@ "):
        raise InvalidResource("the host is not a valid domain name")
    return f"{ascii_name}:{port}" if sep else ascii_name


def render_jrd(
    subject: str, actor_id: str, profile_url: str | None, rels: frozenset[str] | None = None
) -> dict:
    """The JRD for an actor: one `self` link (Mastodon indexes links by rel) and its profile."""
    links: list[dict[str, str]] = []
    if profile_url:
        links.append({"rel": PROFILE_PAGE_REL, "type": "text/html", "href": profile_url})
    links.append({"rel": SELF_REL, "type": AS2_MEDIA_TYPE, "href": actor_id})
    if rels:
        links = [link for link in links if link["rel"] in rels]
    aliases = [url for url in (profile_url, actor_id) if url]
    return {"subject": subject, "aliases": aliases, "links": links}


def render_host_meta_xrd(template: str) -> str:
    """host-meta (RFC 6415) pointing at the WebFinger endpoint; `template` is XML-safe."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" template="{_xml_attr(template)}"/>\n'
        "</XRD>\n"
    )


def render_host_meta_json(template: str) -> dict:
    """The JSON form of host-meta (RFC 6415 appendix A)."""
    return {"links": [{"rel": "lrdd", "template": template}]}


def _xml_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )
