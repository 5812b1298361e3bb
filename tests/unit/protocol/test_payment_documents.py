"""Payment documents: what we build parses back, and what breaks the protocol's rules is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol import payments as wire
from protocol.jsonld import expand

NOW = datetime(2026, 12, 5, 18, tzinfo=UTC)
REQUEST = wire.PaymentRequest(
    id="https://b.example/payments/requests/1",
    payee="https://b.example/users/bob",
    payer="https://a.example/users/alice",
    amount=wire.Amount("EUR", 1250, 2),
    summary="Dinner on Friday",
    published=NOW,
    expires_at=NOW.replace(hour=19),
    condition="q1VxAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    nonce="f3c9AAAAAAAAAAAAAAAA",
    settlement_node="https://b.example/actor",
)


def test_a_built_request_parses_back_and_expands_with_shipped_contexts() -> None:
    document = wire.build_request(REQUEST)
    assert wire.parse_request(document) == REQUEST
    assert document["amount"] == {"currency": "EUR", "minor": "1250", "scale": 2}
    expanded = expand(document)[0]
    assert expanded["@type"] == ["https://kith.social/ns#PaymentRequest"]


@pytest.mark.parametrize(
    "amount",
    [
        {"currency": "EUR", "minor": 1250, "scale": 2},  # a JSON number
        {"currency": "EUR", "minor": "0", "scale": 2},
        {"currency": "EUR", "minor": "-5", "scale": 2},
        {"currency": "EUR", "minor": "12.50", "scale": 2},
        {"currency": "EUR", "minor": "1" * 19, "scale": 2},
        {"currency": "eur", "minor": "1250", "scale": 2},
        {"currency": "EUR", "minor": "1250", "scale": True},
    ],
)
def test_amounts_other_than_positive_decimal_strings_are_refused(amount) -> None:
    with pytest.raises(wire.PaymentDocumentError):
        wire.parse_request({**wire.build_request(REQUEST), "amount": amount})


def test_a_request_whose_settlement_node_is_elsewhere_is_refused() -> None:
    document = {**wire.build_request(REQUEST), "settlementNode": "https://evil.example/actor"}
    with pytest.raises(wire.PaymentDocumentError, match="origin"):
        wire.parse_request(document)


def test_a_transfer_must_belong_to_the_node_that_offers_it() -> None:
    offer = wire.TransferOffer(
        id="https://a.example/payments/transfers/1",
        payer="https://a.example/users/alice",
        payee=REQUEST.payee,
        amount=REQUEST.amount,
        expires_at="2026-12-05T18:02:00Z",
        request_id=REQUEST.id,
        request_digest="00" * 32,
        condition=REQUEST.condition,
    )
    transfer = wire.build_transfer(offer)
    assert wire.parse_transfer(transfer, "https://a.example/actor") == offer
    with pytest.raises(wire.PaymentDocumentError, match="sending node"):
        wire.parse_transfer(transfer, "https://c.example/actor")


def test_a_reject_without_a_code_is_not_a_decision() -> None:
    reject = wire.build_reject(
        "https://b.example/d/1", "https://b.example/actor", "https://a.example/actor",
        "https://a.example/payments/transfers/1", "F06", "expired",
    )  # fmt: skip
    assert wire.parse_decision(reject).code == "F06"
    with pytest.raises(wire.PaymentDocumentError):
        wire.parse_decision({**reject, "code": "nope"})
