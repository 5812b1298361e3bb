"""The Settlement document and its confirmation: shapes built and checked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol import payments as wire

A, B = "https://a.example/actor", "https://b.example/actor"
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def _document(**changes: object) -> dict:
    settlement = wire.PeerSettlement(
        f"https://a.example/payments/settlements/{'k' * 22}",
        A,
        B,
        wire.Amount("EUR", 500, 2),
        "bank 2026-12-06/1",
        NOW,
    )
    return {**wire.build_settlement(settlement), **changes}


def test_a_settlement_round_trips() -> None:
    document = _document()
    assert document["amount"] == {"currency": "EUR", "minor": "500", "scale": 2}
    assert document["to"] == [B]
    parsed = wire.parse_settlement(document, A)
    assert (parsed.debtor, parsed.creditor, parsed.amount.minor) == (A, B, 500)
    assert parsed.reference == "bank 2026-12-06/1"
    assert parsed.published == NOW
    assert wire.carries_settlement({"type": "Create", "object": document})
    assert not wire.carries_settlement({"type": "Create", "object": document["id"]})


@pytest.mark.parametrize(
    ("changes", "sender", "reason"),
    [
        ({"type": "Statement"}, A, "not a Settlement"),
        ({}, B, "not on the sending node"),
        ({"attributedTo": "https://a.example/users/alice"}, A, "not attributed"),
        ({"to": [B, "https://c.example/actor"]}, A, "exactly one node"),
        ({"to": B}, A, "exactly one node"),
        ({"reference": ""}, A, "reference"),
        ({"reference": "x" * 201}, A, "reference"),
        ({"amount": {"currency": "EUR", "minor": 500, "scale": 2}}, A, "minor"),
        ({"published": "yesterday"}, A, "published"),
    ],
)
def test_malformed_settlements_are_refused(changes: dict, sender: str, reason: str) -> None:
    with pytest.raises(wire.PaymentDocumentError, match=reason):
        wire.parse_settlement(_document(**changes), sender)


def test_a_confirmation_names_the_settlement_and_when() -> None:
    settlement_id = _document()["id"]
    accept = wire.build_settlement_confirmation(f"{B}/x", B, A, settlement_id, NOW)
    assert wire.parse_settlement_confirmation(accept) == (settlement_id, NOW)
    with pytest.raises(wire.PaymentDocumentError, match="no result"):
        wire.parse_settlement_confirmation({**accept, "result": None})
    with pytest.raises(wire.PaymentDocumentError, match="not an Accept"):
        wire.parse_settlement_confirmation({**accept, "type": "Reject"})
