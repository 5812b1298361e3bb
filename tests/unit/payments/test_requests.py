"""Payment requests' state machine, expiry on the payee's clock, and the hash-lock."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from payments.requests import (
    DEFAULT_EXPIRY,
    InvalidTransition,
    RequestState,
    condition_of,
    encode_fulfillment,
    expiry_for,
    fulfills,
    new_fulfillment,
    state_at,
    transition,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
TERMINAL = [s for s in RequestState if s is not RequestState.OPEN]


@pytest.mark.parametrize("target", TERMINAL)
def test_an_open_request_ends_once_in_any_terminal_state(target: RequestState) -> None:
    assert transition(RequestState.OPEN, target) is target
    for after in RequestState:
        with pytest.raises(InvalidTransition):
            transition(target, after)


def test_an_open_request_cannot_become_open_again() -> None:
    with pytest.raises(InvalidTransition):
        transition(RequestState.OPEN, RequestState.OPEN)


def test_expiry_is_on_the_payee_clock_and_inclusive() -> None:
    expires = expiry_for(NOW)
    assert expires - NOW == DEFAULT_EXPIRY
    assert state_at(RequestState.OPEN, expires, expires - timedelta(seconds=1)) is RequestState.OPEN
    assert state_at(RequestState.OPEN, expires, expires) is RequestState.EXPIRED
    assert state_at(RequestState.PAID, expires, expires + timedelta(days=1)) is RequestState.PAID


@pytest.mark.parametrize("lifetime", [timedelta(0), timedelta(seconds=59), timedelta(days=31)])
def test_a_request_never_lasts_unlimited_or_too_short(lifetime: timedelta) -> None:
    with pytest.raises(ValueError, match="between"):
        expiry_for(NOW, lifetime)


def test_only_the_right_fulfillment_unlocks_the_condition() -> None:
    secret = new_fulfillment()
    condition = condition_of(secret)
    assert condition == condition_of(secret)
    assert len(condition) == 43  # base64url of 32 bytes, unpadded
    assert hashlib.sha256(secret).digest().hex() != condition
    assert fulfills(encode_fulfillment(secret), condition)
    assert not fulfills(encode_fulfillment(new_fulfillment()), condition)
    assert not fulfills(encode_fulfillment(secret[:31]), condition)
    assert not fulfills("not base64 !", condition)
    assert new_fulfillment() != new_fulfillment()
