"""Payment requests: their states, their expiry, and the hash-lock that makes a receipt.

A request is single-use: `open` until it ends exactly once as `paid`, `declined`, `expired` or
`cancelled`. Its `condition` is the SHA-256 of a 32-byte secret (the fulfillment) that only the
payee's node knows until it accepts a payment: the fulfillment in a signed Accept proves that
payment was accepted for this request (reference §6.3, as Interledger and BOLT11 do).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from enum import StrEnum

DEFAULT_EXPIRY = timedelta(hours=1)
MAXIMUM_EXPIRY = timedelta(days=30)
MINIMUM_EXPIRY = timedelta(minutes=1)
FULFILLMENT_BYTES = 32


class RequestState(StrEnum):
    OPEN = "open"
    PAID = "paid"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# Every state but `open` is terminal.
_NEXT = {RequestState.OPEN: frozenset(RequestState) - {RequestState.OPEN}}


class InvalidTransition(ValueError):
    """A request asked to move where its state machine does not go."""


def transition(current: RequestState, target: RequestState) -> RequestState:
    """The new state, if `current` may move to `target`."""
    if target not in _NEXT.get(current, frozenset()):
        raise InvalidTransition(f"a {current.value} request cannot become {target.value}")
    return target


def state_at(state: RequestState, expires_at: datetime, now: datetime) -> RequestState:
    """What the request is at `now` on the payee node's clock: open ones expire at
    `expires_at` (inclusive), whatever the payer's clock says."""
    if state is RequestState.OPEN and now >= expires_at:
        return RequestState.EXPIRED
    return state


def expiry_for(now: datetime, requested: timedelta | None = None) -> datetime:
    """When a new request expires: one hour by default, never unlimited."""
    lifetime = DEFAULT_EXPIRY if requested is None else requested
    if not MINIMUM_EXPIRY <= lifetime <= MAXIMUM_EXPIRY:
        raise ValueError(f"a request lasts between {MINIMUM_EXPIRY} and {MAXIMUM_EXPIRY.days} days")
    return now + lifetime


def new_fulfillment() -> bytes:
    """The payee node's secret for one request."""
    return secrets.token_bytes(FULFILLMENT_BYTES)


def condition_of(fulfillment: bytes) -> str:
    """The request's `condition`: base64url (no padding) of SHA-256 of the fulfillment."""
    return _b64(hashlib.sha256(fulfillment).digest())


def encode_fulfillment(fulfillment: bytes) -> str:
    return _b64(fulfillment)


def fulfills(encoded_fulfillment: str, condition: str) -> bool:
    """Whether a fulfillment (as sent, base64url) unlocks `condition`."""
    try:
        padded = encoded_fulfillment + "=" * (-len(encoded_fulfillment) % 4)
        fulfillment = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (ValueError, TypeError):
        return False
    if len(fulfillment) != FULFILLMENT_BYTES:
        return False
    return hmac.compare_digest(condition_of(fulfillment), condition)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
