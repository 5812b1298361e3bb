"""Which peer domains this node federates with: never the suspended ones, and in allowlist
mode only the listed ones.

One `DomainRules` value is shared by the inbox, the fetcher and the delivery worker; the
server refreshes it from its domain-block table (and config) whenever that changes, so a
check is a set lookup, never a query.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def matches(host: str, domains: frozenset[str]) -> bool:
    """Whether host[:port] is one of `domains` or a subdomain of one (`a.b` covers `x.a.b`);
    an entry with a port names that one authority only."""
    host = host.lower()
    if host in domains:
        return True
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return any(name == domain or name.endswith("." + domain) for domain in domains)


def host_of_url(url: str) -> str:
    """host[:port] of a URL ('' when it has none)."""
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return ""


class DomainRules:
    """The suspended domains and actors and, in allowlist mode, the only allowed domains
    (refreshable)."""

    def __init__(self, suspended: Iterable[str] = (), allowed: Iterable[str] | None = None) -> None:
        self.suspended: frozenset[str] = frozenset()
        self.allowed: frozenset[str] | None = None
        self.actors: frozenset[str] = frozenset()
        self.update(suspended, allowed)

    def update(
        self, suspended: Iterable[str], allowed: Iterable[str] | None, actors: Iterable[str] = ()
    ) -> None:
        """Replace the rules (a suspension or an unblock just committed)."""
        self.suspended = frozenset(d.lower() for d in suspended)
        self.allowed = None if allowed is None else frozenset(d.lower() for d in allowed)
        self.actors = frozenset(actors)

    def refuses_host(self, host: str) -> bool:
        """Whether nothing may be taken from or sent to this host[:port]."""
        if not host:
            return False
        if self.suspended and matches(host, self.suspended):
            return True
        return self.allowed is not None and not matches(host, self.allowed)

    def refuses(self, *urls: str) -> bool:
        """Whether any of these URLs is a suspended actor or on a refused host."""
        return any(url in self.actors or self.refuses_host(host_of_url(url)) for url in urls if url)
