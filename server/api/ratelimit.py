"""Fixed-window rate limits kept in memory (one process; good enough to stop floods)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


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
