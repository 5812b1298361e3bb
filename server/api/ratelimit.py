"""Fixed-window rate limits kept in memory (one process; good enough to stop floods).

Each node process counts on its own: with several processes behind one address, a client
gets up to that many times the limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from server.api.auth import bearer_token
from server.api.errors import ApiError, Handler, json_error
from server.appkeys import CLOCK


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

    def _forget_expired(self, now: datetime) -> None:
        for key in [k for k, (start, _) in self._windows.items() if now - start >= self.period]:
            del self._windows[key]
        if len(self._windows) >= self.keys_max:
            self._windows.clear()  # under attack by many keys: start over rather than grow


@dataclass(frozen=True)
class ApiLimits:
    """The client API's limiters: per access token, and per address for anonymous calls."""

    per_token: RateLimiter
    per_address: RateLimiter


API_LIMITS = web.AppKey("api_limits", ApiLimits)
_LIMITED = ("/api/", "/oauth/")


def api_limits(per_token: int, per_address: int, window_s: int) -> ApiLimits:
    period = timedelta(seconds=window_s)
    return ApiLimits(RateLimiter(per_token, period), RateLimiter(per_address, period))


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count client API calls; every answer says how many remain, as Mastodon's do."""
    if not request.path.startswith(_LIMITED):
        return await handler(request)
    limits = request.app[API_LIMITS]
    try:
        token = bearer_token(request)
    except ApiError:
        token = None  # the handler will refuse it; count it against the address
    if token:
        # Counted by a digest, so no token sits in memory longer than its request.
        key = hashlib.blake2b(token.encode(), digest_size=16).hexdigest()
        verdict = limits.per_token.hit(key, request.app[CLOCK]())
    else:
        verdict = limits.per_address.hit(request.remote or "", request.app[CLOCK]())
    headers = {
        "X-RateLimit-Limit": str(verdict.limit),
        "X-RateLimit-Remaining": str(verdict.remaining),
        "X-RateLimit-Reset": verdict.reset_at.isoformat().replace("+00:00", "Z"),
    }
    if not verdict.allowed:
        wait = max(1, int((verdict.reset_at - request.app[CLOCK]()).total_seconds()))
        return json_error(429, "Too many requests", headers={**headers, "Retry-After": str(wait)})
    response = await handler(request)
    if not response.prepared:
        response.headers.update(headers)
    return response
