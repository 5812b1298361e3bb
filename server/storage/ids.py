"""Time-sorted 64-bit ids, shown to clients as decimal strings as Mastodon does."""

from __future__ import annotations

import itertools
import secrets
from datetime import UTC, datetime

_SEQUENCE_BITS = 16
# A random start keeps two processes that begin in the same millisecond apart.
_sequence = itertools.count(secrets.randbelow(1 << _SEQUENCE_BITS))


def new_id(now: datetime) -> int:
    """An id that sorts by creation time: milliseconds since the epoch, then a sequence."""
    millis = int(now.timestamp() * 1000)
    return (millis << _SEQUENCE_BITS) | (next(_sequence) & ((1 << _SEQUENCE_BITS) - 1))


def time_of_id(value: int) -> datetime:
    """When an id from `new_id` was made (to the millisecond)."""
    return datetime.fromtimestamp((value >> _SEQUENCE_BITS) / 1000, tz=UTC)


def first_id_after(moment: datetime) -> int:
    """The smallest id `new_id` can give after `moment`'s millisecond."""
    return (int(moment.timestamp() * 1000) + 1) << _SEQUENCE_BITS
