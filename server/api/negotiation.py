"""HTTP content negotiation over the Accept header (RFC 9110 §12.5.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from server.api.errors import ApiError

_ACCEPT_LENGTH_MAX = 2048


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    q: float

    def matches(self, media_type: str) -> int:
        """Specificity of the match (3 exact, 2 type/*, 1 */*), 0 if none."""
        kind, _, sub = media_type.partition("/")
        if self.type == "*" and self.subtype == "*":
            return 1
        if self.type != kind:
            return 0
        if self.subtype == "*":
            return 2
        return 3 if self.subtype == sub else 0


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header; a missing or empty header accepts anything."""
    if not header or not header.strip():
        return [MediaRange("*", "*", 1.0)]
    ranges = []
    for part in header[:_ACCEPT_LENGTH_MAX].split(","):
        media, *params = (p.strip() for p in part.split(";"))
        kind, slash, sub = media.lower().partition("/")
        if not slash or not kind or not sub:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                q = min(max(q, 0.0), 1.0) if math.isfinite(q) else 0.0
        ranges.append(MediaRange(kind, sub, q))
    return ranges


def negotiate(header: str | None, offers: list[str]) -> str | None:
    """The best of `offers` for this Accept header (earlier offers win ties), or None."""
    ranges = parse_accept(header)
    best: tuple[float, int, int] | None = None
    chosen = None
    for index, offer in enumerate(offers):
        matches = [(r.matches(offer), r.q) for r in ranges if r.matches(offer)]
        if not matches:
            continue
        specificity, q = max(matches)
        if q <= 0:
            continue
        score = (q, specificity, -index)
        if best is None or score > best:
            best, chosen = score, offer
    return chosen


def require(header: str | None, offers: list[str]) -> str:
    """Like negotiate, but a 406 with the acceptable types when nothing fits."""
    chosen = negotiate(header, offers)
    if chosen is None:
        raise ApiError(406, "not acceptable", "this resource is available as " + ", ".join(offers))
    return chosen
