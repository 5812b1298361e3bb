"""Settlement between operators (reference §6.6) between two real nodes over loopback HTTP.

The debtor node books a settlement when its operator records it; the creditor node books it
only when its operator confirms the money arrived. Afterwards both nodes' accounts for each
other still mirror each other, and every audit is clean.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from sqlalchemy import select

from federation.dispatch import PRIORITY_DIRECT, Outbound
from federation.tables import inbox_items
from payments import ledger, peer_settlements, peers, settlement
from payments.parties import PaymentError, peer_owner
from payments.tables import peer_statements
from protocol.payments import Amount
from protocol.proofs import sign_object
from server.peer_settling import PeerSettling, Settled
from tests.federation import test_payments
from tests.federation.test_payments import (
    Pair,
    _seed_of,
    _statements,
    assert_money_conserved,
    settled,
)
from tests.harness import Node, eventually

pytestmark = pytest.mark.slow
pair = test_payments.pair  # the fixture: alice on A with 100.00 EUR, bob on B


def _node_actor(node: Node) -> str:
    return node.base_url + "/actor"


async def _pay_bob(pair: Pair, amount: str) -> None:
    sent = await pair.alice.post(
        "/api/kith/v1/transfers", to=pair.bob_handle, amount=amount, currency="EUR"
    )
    assert sent.status == 202, sent.body
    assert (await settled(pair.alice, sent.body["id"]))["state"] == "completed"


async def _record_payment(pair: Pair, minor: int, reference: str) -> Settled:
    """A's operator records paying B's, as `kith peers settle` does."""

    async def settle(conn, now):  # type: ignore[no-untyped-def]
        return await PeerSettling(pair.a.federation.payments).settle(
            conn, pair.b.domain, Amount("EUR", minor, 2), reference, now
        )

    return await pair.a.perform(settle)


async def _confirm(node: Node, uri: str) -> peer_settlements.PeerSettlementRecord:
    """The creditor's operator confirms, as `kith peers confirm` does."""

    async def confirm(conn, now):  # type: ignore[no-untyped-def]
        return await PeerSettling(node.federation.payments).confirm(conn, uri, now)

    return await node.perform(confirm)


async def _settlements(node: Node, peer: Node) -> list[tuple[str, str, int]]:
    async with node.db.read() as conn:
        found = await peer_settlements.settlements_with(conn, peer.domain)
    return [(record.role, record.state, record.amount) for record in found]


async def _peer_balance(node: Node, peer: Node) -> int:
    async with node.db.read() as conn:
        account = await ledger.account_of(conn, peer_owner(_node_actor(peer)), "EUR")
    return account.balance if account else 0


async def _audits(node: Node) -> list[str]:
    """What `kith payments audit` checks."""
    async with node.db.read() as conn:
        return (
            await ledger.audit(conn)
            + await settlement.audit(conn)
            + await peer_settlements.audit(conn)
        )


async def _owes_us(node: Node, peer: Node) -> int:
    """What `kith peers list` shows as OWES US."""
    async with node.db.read() as conn:
        found = await peers.positions(conn, lambda _peer, _currency: 0)
    return next(p.owes_us for p in found if p.peer == peer.domain and p.currency == "EUR")


async def test_a_settlement_is_booked_by_the_debtor_at_once_and_by_the_creditor_on_confirmation(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    await _pay_bob(pair, "7.00")
    assert await _peer_balance(pair.a, pair.b) == 700  # A owes B
    assert await _peer_balance(pair.b, pair.a) == -700

    caplog.set_level(logging.WARNING, logger="kith.payments")
    done = await _record_payment(pair, 500, "bank transfer 2026-12-06/1")
    assert not done.repeated
    uri = done.record.uri
    assert uri.startswith(pair.a.base_url + "/payments/settlements/")
    assert await _peer_balance(pair.a, pair.b) == 200  # booked at once on the debtor's side
    assert await _settlements(pair.a, pair.b) == [("debtor", "sent", 500)]

    # B keeps it unconfirmed and books nothing: only its operator knows the money arrived.
    await eventually(lambda: _settlements(pair.b, pair.a))
    assert await _settlements(pair.b, pair.a) == [("creditor", "unconfirmed", 500)]
    assert await _peer_balance(pair.b, pair.a) == -700
    assert f"kith peers confirm {uri}" in caplog.text
    assert await _audits(pair.b) == []

    # Recording the same reference again books nothing and sends the same settlement.
    again = await _record_payment(pair, 500, "bank transfer 2026-12-06/1")
    assert again.repeated
    assert again.record.uri == uri
    assert await _peer_balance(pair.a, pair.b) == 200

    confirmed = await _confirm(pair.b, uri)
    assert confirmed.state == "confirmed"
    assert await _peer_balance(pair.b, pair.a) == -200
    await eventually(lambda: _settlements(pair.a, pair.b), lambda s: s[0][1] == "confirmed")
    async with pair.a.db.read() as conn:
        record = await peer_settlements.settlement_by_uri(conn, uri)
    assert record is not None
    assert record.answer is not None
    assert record.answer["actor"] == _node_actor(pair.b)
    assert record.answer["proof"]  # the creditor's signed word: a receipt

    # Both nodes agree B is owed 2.00; nothing else moved and every audit is clean.
    assert await _owes_us(pair.a, pair.b) == -200
    assert await _owes_us(pair.b, pair.a) == 200
    for node in (pair.a, pair.b):
        assert await _audits(node) == []
    await assert_money_conserved(pair.a, pair.b)
    assert await _settlements(pair.b, pair.a) == [("creditor", "confirmed", 500)]

    # The next netting statement states it, and both nodes sign what their ledgers say.
    issuer, other = sorted((pair.a, pair.b), key=_node_actor)
    for node in (pair.a, pair.b):
        node.clock.advance(minutes=11)

    async def propose(conn, now):  # type: ignore[no-untyped-def]
        return await issuer.federation.payments.propose_statement(
            conn, other.config.domain, "EUR", now
        )

    statement = await issuer.perform(propose)
    assert statement["settlements"] == [
        {"id": uri, "amount": "500", "paidToIssuer": issuer is pair.b}
    ]
    assert int(statement["owedToIssuer"]) == await _owes_us(issuer, other)
    await eventually(lambda: _statements(issuer), lambda found: found[-1][1] != "proposed")
    assert await _statements(issuer) == [("issuer", "agreed", None)]


async def _deliver(sender: Node, receiver: Node, signer: str, document: dict) -> str:
    """`sender` delivers `document` to `receiver`'s node actor in a Create by `signer`; how
    the receiver's inbox ended with it."""
    create = {
        "@context": document["@context"],
        "type": "Create",
        "id": f"{signer}#settlement/{uuid.uuid4().hex}",
        "actor": signer,
        "to": [_node_actor(receiver)],
        "object": document,
    }
    return await _send(sender, receiver, signer, create)


async def _send(sender: Node, receiver: Node, signer: str, activity: dict) -> str:
    async def send(conn, now) -> list[Outbound]:  # type: ignore[no-untyped-def]
        return [Outbound(activity, signer, tuple(activity["to"]), PRIORITY_DIRECT)]

    await sender.perform(send)

    async def outcome() -> list[str]:
        async with receiver.db.read() as conn:
            rows = await conn.execute(
                select(inbox_items.c.state, inbox_items.c.last_error).where(
                    inbox_items.c.activity_id == activity["id"]
                )
            )
            return [f"{row.state}: {row.last_error}" for row in rows]

    found = await eventually(outcome, lambda states: states and "queued" not in states[0])
    return found[0]


async def test_forged_and_repeated_settlements_book_nothing(pair: Pair) -> None:
    await _pay_bob(pair, "7.00")
    done = await _record_payment(pair, 300, "cash, 6 December")
    await eventually(lambda: _settlements(pair.b, pair.a))
    async with pair.a.db.read() as conn:
        genuine = (await peer_settlements.settlement_by_uri(conn, done.record.uri)).document  # type: ignore[union-attr]
    a_node = await pair.a.federation.payments.node_key()
    unsigned = {key: value for key, value in genuine.items() if key != "proof"}

    def signed_by_a(document: dict) -> dict:
        return sign_object(document, a_node.seed, a_node.key_id, "2026-11-24T12:00:00Z")

    # Tampered with after signing.
    tampered = {**genuine, "id": genuine["id"] + "x", "reference": "cash, 7 December"}
    tampered["amount"] = {**genuine["amount"], "minor": "30000"}
    assert "proof is not valid" in await _deliver(pair.a, pair.b, a_node.actor, tampered)

    # A user of the debtor's node cannot speak for the node, even with its own key.
    alice = await pair.a.account("alice")
    alice_actor = pair.a.urls.actor(alice)
    by_alice = {**unsigned, "id": unsigned["id"] + "y", "attributedTo": alice_actor}
    by_alice["reference"] = "from alice"
    by_alice = sign_object(
        by_alice,
        await _seed_of(pair.a, alice.id),
        f"{alice_actor}#ed25519-key",
        "2026-11-24T12:00:00Z",
    )
    assert "instance actor" in await _deliver(pair.a, pair.b, alice_actor, by_alice)

    # The same id with other content is refused; the same settlement again changes nothing.
    other = signed_by_a({**unsigned, "amount": {**unsigned["amount"], "minor": "400"}})
    assert "other content" in await _deliver(pair.a, pair.b, a_node.actor, other)
    assert (await _deliver(pair.a, pair.b, a_node.actor, genuine)).startswith("done")
    assert await _settlements(pair.b, pair.a) == [("creditor", "unconfirmed", 300)]
    assert await _peer_balance(pair.b, pair.a) == -700

    # Only the node that was paid confirms: bob cannot, nor can a confirmation of nothing.
    bob_actor = pair.b.urls.actor(await pair.b.account("bob"))
    by_bob = {
        "@context": genuine["@context"],
        "type": "Accept",
        "id": f"{bob_actor}#confirmed/{uuid.uuid4().hex}",
        "actor": bob_actor,
        "to": [a_node.actor],
        "object": genuine["id"],
        "result": {"confirmedAt": "2026-11-24T12:00:00Z"},
    }
    assert "only the node that was paid" in await _send(pair.b, pair.a, bob_actor, by_bob)
    assert await _settlements(pair.a, pair.b) == [("debtor", "sent", 300)]

    # Confirmed once, a repeated Create gets the confirmation again; nothing is booked twice.
    await _confirm(pair.b, genuine["id"])
    await eventually(lambda: _settlements(pair.a, pair.b), lambda s: s[0][1] == "confirmed")
    assert (await _deliver(pair.a, pair.b, a_node.actor, genuine)).startswith("done")
    assert await _peer_balance(pair.b, pair.a) == -400
    assert await _peer_balance(pair.a, pair.b) == 400
    for node in (pair.a, pair.b):
        assert await _audits(node) == []
    await assert_money_conserved(pair.a, pair.b)


async def test_the_debtor_cannot_settle_more_than_it_owes(pair: Pair) -> None:
    await _pay_bob(pair, "1.00")
    with pytest.raises(PaymentError, match=r"you owe .* 1\.00 EUR, less than 1\.01"):
        await _record_payment(pair, 101, "too much")
    assert await _peer_balance(pair.a, pair.b) == 100
    async with pair.a.db.read() as conn:
        assert await peer_settlements.settlements_with(conn, pair.b.domain) == []
    assert await _audits(pair.a) == []


async def test_a_confirmed_settlement_alone_brings_the_next_periodic_statement(pair: Pair) -> None:
    issuer = min((pair.a, pair.b), key=_node_actor)

    async def advance(minutes: int) -> None:
        for node in (pair.a, pair.b):
            node.clock.advance(minutes=minutes)

    await _pay_bob(pair, "7.00")
    await advance(11)
    await issuer.perform(issuer.federation.payments.propose_due)
    await eventually(lambda: _statements(issuer), lambda found: found[-1][1] == "agreed")
    await advance(61)
    await issuer.perform(issuer.federation.payments.propose_due)
    assert len(await _statements(issuer)) == 1  # no payment since: nothing to state

    done = await _record_payment(pair, 400, "bank transfer 2026-12-06/2")
    await eventually(lambda: _settlements(pair.b, pair.a))
    await _confirm(pair.b, done.record.uri)
    await eventually(lambda: _settlements(pair.a, pair.b), lambda s: s[0][1] == "confirmed")
    await issuer.perform(issuer.federation.payments.propose_due)
    assert len(await _statements(issuer)) == 1  # confirmed too recently to be stated
    await advance(11)
    await issuer.perform(issuer.federation.payments.propose_due)
    found = await eventually(
        lambda: _statements(issuer), lambda found: len(found) == 2 and found[1][1] == "agreed"
    )
    assert found == [("issuer", "agreed", None)] * 2
    async with issuer.db.read() as conn:
        documents = await conn.execute(
            select(peer_statements.c.document).order_by(peer_statements.c.id)
        )
        stated = [json.loads(document)["settlements"] for (document,) in documents]
    paid = {"id": done.record.uri, "amount": "400", "paidToIssuer": issuer is pair.b}
    assert stated == [[], [paid]]
