"""The clock is passed in, so tests can hold time still or move it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current moment, timezone-aware UTC."""
    return datetime.now(UTC)
