"""Fixed-window rate limits kept in memory (one process; good enough to stop floods).

Each node process counts on its own: with several processes behind one address, a client
gets up to that many times the limit. Counting is O(1) per request: one dictionary entry per
token or address, forgotten once its window has passed and the table is full.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from server.api.errors import Handler, json_error
from server.appkeys import CLOCK

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_at: datetime


class RateLimiter:
    """At most `limit` hits per key in each `period` window."""

    def __init__(self, limit: int, period: timedelta, keys_max: int = 100_000) -> None:
        self.limit = limit
        self.period = period
        self.keys_max = keys_max
        self._windows: dict[str, tuple[datetime, int]] = {}

    def hit(self, key: str, now: datetime, cost: int = 1) -> Verdict:
        """Count one hit (or `cost`) against `key` and say whether it is allowed."""
        start, used = self._windows.get(key, (now, 0))
        if now - start >= self.period:
            start, used = now, 0
        used += cost
        if len(self._windows) >= self.keys_max and key not in self._windows:
            self._forget_expired(now)
        self._windows[key] = (start, used)
        remaining = max(self.limit - used, 0)
        return Verdict(used <= self.limit, self.limit, remaining, start + self.period)

    def peek(self, key: str, now: datetime) -> bool:
        """Whether `key` is over its limit, without counting a hit."""
        start, used = self._windows.get(key, (now, 0))
        return now - start < self.period and used >= self.limit

    def verdict(self, key: str, now: datetime) -> Verdict:
        """Where `key` stands, without counting a hit."""
        start, used = self._windows.get(key, (now, 0))
        if now - start >= self.period:
            start, used = now, 0
        return Verdict(
            used < self.limit, self.limit, max(self.limit - used, 0), start + self.period
        )

    def is_fresh(self, key: str, now: datetime) -> bool:
        """Whether `key` has no hit in the current window."""
        start, _ = self._windows.get(key, (now - self.period, 0))
        return now - start >= self.period

    def _forget_expired(self, now: datetime) -> None:
        for key in [k for k, (start, _) in self._windows.items() if now - start >= self.period]:
            del self._windows[key]
        if len(self._windows) >= self.keys_max:
            self._windows.clear()  # under attack by many keys: start over rather than grow


@dataclass(frozen=True)
class ApiLimits:
    """The client API's limiters and who may tell us a client's real address."""

    per_token: RateLimiter  # every call with a bearer token, by token
    per_address: RateLimiter  # calls without a token, and refused tokens, by address
    posts: RateLimiter  # posting, by token
    trusted_proxies: tuple[Network, ...] = ()


API_LIMITS = web.AppKey("api_limits", ApiLimits)
_LIMITED = ("/api/", "/oauth/")
_C2S = ("/users/", "/objects/")  # the outbox, inbox and activities, when a client asks


def api_limits(
    per_token: int,
    per_address: int,
    window_s: int,
    posts: int = 300,
    posts_window_s: int = 3 * 3600,
    trusted_proxies: Iterable[str] = (),
) -> ApiLimits:
    period = timedelta(seconds=window_s)
    return ApiLimits(
        RateLimiter(per_token, period),
        RateLimiter(per_address, period),
        RateLimiter(posts, timedelta(seconds=posts_window_s)),
        tuple(ipaddress.ip_network(n.strip(), strict=False) for n in trusted_proxies),
    )


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted reverse proxy, the
    last address in X-Forwarded-For that is not one of our proxies (RFC 7239 §5.2 reasoning:
    only what our own proxies appended can be believed)."""
    remote = request.remote or ""
    if not trusted or not _is_trusted(remote, trusted):
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_address(hop) else remote
    return hops[0] if hops and _is_address(hops[0]) else remote


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _bearer(request: web.Request) -> str | None:
    """The bearer token, if any, without judging it (the handler does that)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query.get("access_token") or None


def _is_client_call(request: web.Request) -> bool:
    """Client API calls: /api/, /oauth/, and C2S requests (outbox, inbox…) made with a token."""
    if request.path.startswith(_LIMITED):
        return True
    return (
        request.path.startswith(_C2S)
        and request.headers.get("Authorization", "")[:7].lower() == "bearer "
    )


def _is_post(request: web.Request) -> bool:
    if request.method != "POST":
        return False
    path = request.path.rstrip("/")
    if path in ("/api/v1/statuses", "/api/kith/v1/payment_requests"):
        return True  # payment requests share the posting budget: nobody floods people with them
    return path.startswith("/users/") and path.endswith("/outbox")


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count client API calls; every answer says how many remain, as Mastodon's do."""
    if not _is_client_call(request):
        return await handler(request)
    limits = request.app[API_LIMITS]
    now = request.app[CLOCK]()
    token = _bearer(request)
    address = client_address(request, limits.trusted_proxies)
    if token is None:
        verdict = limits.per_address.hit(address, now)
    else:
        # Counted by a digest, so no token sits in memory longer than its request.
        key = hashlib.blake2b(token.encode(), digest_size=16).hexdigest()
        if limits.per_token.is_fresh(key, now) and limits.per_address.peek(address, now):
            # An unseen token from an address that used up its anonymous calls: made-up
            # tokens must not buy a fresh allowance each.
            verdict = limits.per_address.verdict(address, now)
        else:
            verdict = limits.per_token.hit(key, now)
            if verdict.allowed and _is_post(request):
                verdict = _closest(verdict, limits.posts.hit(key, now))
    headers = _headers(verdict)
    if not verdict.allowed:
        wait = max(1, int((verdict.reset_at - now).total_seconds()))
        return json_error(429, "Too many requests", headers={**headers, "Retry-After": str(wait)})
    response = await handler(request)
    if token is not None and response.status == 401:
        limits.per_address.hit(address, now)  # a refused token counts as an anonymous call
    if not response.prepared:
        response.headers.update(headers)
    return response


def _closest(a: Verdict, b: Verdict) -> Verdict:
    """Of two limits that apply, the one nearest to refusing (Mastodon reports that one)."""
    if not b.allowed or (a.allowed and b.remaining < a.remaining):
        return b
    return a


def _headers(verdict: Verdict) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(verdict.limit),
        "X-RateLimit-Remaining": str(verdict.remaining),
        "X-RateLimit-Reset": verdict.reset_at.isoformat().replace("+00:00", "Z"),
    }
