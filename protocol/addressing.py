"""Visibility and addressing exactly as Mastodon maps them (federation-interop.md §3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol.vocab import PUBLIC, PUBLIC_ALIASES

PUBLIC_VISIBILITY = "public"
UNLISTED = "unlisted"
PRIVATE = "private"  # followers only
DIRECT = "direct"
LIMITED = "limited"  # addressed to someone not mentioned: Mastodon's "limited"
VISIBILITIES = (PUBLIC_VISIBILITY, UNLISTED, PRIVATE, DIRECT)


@dataclass(frozen=True)
class Audience:
    to: tuple[str, ...]
    cc: tuple[str, ...]

    @property
    def everyone(self) -> tuple[str, ...]:
        return self.to + self.cc


def audience_for(visibility: str, followers: str, mentions: Iterable[str]) -> Audience:
    """`to`/`cc` for a post of this visibility (Mastodon's `tag_manager.rb`)."""
    mentioned = tuple(dict.fromkeys(mentions))
    if visibility == PUBLIC_VISIBILITY:
        return Audience(to=(PUBLIC,), cc=(followers, *mentioned))
    if visibility == UNLISTED:
        return Audience(to=(followers,), cc=(PUBLIC, *mentioned))
    if visibility == PRIVATE:
        return Audience(to=(followers,), cc=mentioned)
    if visibility == DIRECT:
        return Audience(to=mentioned, cc=())
    raise ValueError(f"unknown visibility {visibility!r}")


def visibility_of(
    to: Iterable[str], cc: Iterable[str], followers: str | None, mentioned: Iterable[str]
) -> str:
    """What a received post's addressing means (Mastodon's `status_parser.rb`)."""
    to, cc = list(to), list(cc)
    if any(address in PUBLIC_ALIASES for address in to):
        return PUBLIC_VISIBILITY
    if any(address in PUBLIC_ALIASES for address in cc):
        return UNLISTED
    if followers is not None and followers in to + cc:
        return PRIVATE
    tagged = set(mentioned)
    addressed = {address for address in to + cc if address != followers}
    return DIRECT if addressed <= tagged else LIMITED


def is_public(visibility: str) -> bool:
    """Public and unlisted posts may be boosted, listed in outboxes and shown to anyone."""
    return visibility in (PUBLIC_VISIBILITY, UNLISTED)
