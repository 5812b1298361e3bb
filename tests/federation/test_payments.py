"""Payments between two real nodes over loopback HTTP, through the Kith payments API.

After every scenario each node's ledger audits clean and no money was created or lost: what
went in through deposits is what the users hold, and what one node owes the other is what the
other says it is owed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from federation.dispatch import PRIORITY_DIRECT, Outbound
from federation.tables import deliveries, inbox_items
from payments import ledger, peers, settlement
from payments.money import Currencies
from payments.parties import peer_owner
from payments.tables import payment_requests, peer_limits, peer_statements, settlements
from protocol.proofs import sign_object
from server.social import graph
from server.storage.tables import account_keys, blocks
from server.wallets import deposit
from tests.api.client import ApiClient, client_for
from tests.federation.fake_peer import Peer, remember
from tests.harness import Node, NodeFactory, eventually

DEPOSIT = 100_00  # 100.00 EUR


@dataclass
class Pair:
    a: Node
    b: Node
    alice: ApiClient  # on a, with 100.00 EUR
    bob: ApiClient  # on b, with nothing

    @property
    def bob_handle(self) -> str:
        return self.b.handle("bob")

    @property
    def alice_handle(self) -> str:
        return self.a.handle("alice")


async def fund(node: Node, username: str, minor: int = DEPOSIT) -> None:
    account = await node.account(username)
    async with node.db.transaction() as conn:
        await deposit(conn, account, minor, Currencies().get("EUR"), node.clock())


@pytest.fixture
async def pair(nodes: NodeFactory) -> Pair:
    a = await nodes.start(payments__default_credit_limit="1000")
    b = await nodes.start(payments__default_credit_limit="1000")
    alice, bob = await client_for(a, "alice"), await client_for(b, "bob")
    await fund(a, "alice")
    return Pair(a, b, alice, bob)


async def balance(client: ApiClient, kind: str = "balance") -> str:
    wallet = (await client.get("/api/kith/v1/wallet")).body
    found = [b for b in wallet["balances"] if b["currency"] == "EUR"]
    return found[0][kind] if found else "0.00"


async def incoming_request(client: ApiClient) -> dict:
    async def listed() -> list:
        answer = await client.get("/api/kith/v1/payment_requests", direction="incoming")
        return answer.body

    return (await eventually(listed))[0]


async def settled(client: ApiClient, transfer_id: str) -> dict:
    async def state() -> dict:
        return (await client.get(f"/api/kith/v1/transfers/{transfer_id}")).body

    return await eventually(state, lambda body: body["state"] != "pending")


async def pay(client: ApiClient, request_id: str, key: str) -> tuple[int, dict]:
    answer = await client.request(
        "POST",
        f"/api/kith/v1/payment_requests/{request_id}/pay",
        headers={"Idempotency-Key": key},
    )
    return answer.status, answer.body


async def assert_money_conserved(*nodes: Node, deposited: int = DEPOSIT) -> None:
    """Every ledger audits clean, users hold what was deposited, peers agree on what is owed."""
    held, owed = 0, {}
    for node in nodes:
        async with node.db.read() as conn:
            assert await ledger.audit(conn) == []
            for account in await ledger.all_accounts(conn):
                if account.owner.startswith("user:"):
                    held += account.balance
                elif account.owner.startswith("peer:"):
                    owed[(node.config.domain, account.owner)] = account.balance
    assert held == deposited
    for (domain, owner), amount in owed.items():
        other = next(n for n in nodes if owner == peer_owner(n.config.base_url + "/actor"))
        mirror = owed.get((other.config.domain, peer_owner(f"http://{domain}/actor")), 0)
        assert amount + mirror == 0, f"{domain} {owner}: {amount}, the peer says {mirror}"


async def test_a_request_paid_across_nodes_moves_the_money_once_with_a_verified_receipt(
    pair: Pair,
) -> None:
    created = await pair.bob.post(
        "/api/kith/v1/payment_requests",
        payer=pair.alice_handle,
        amount="12.50",
        currency="EUR",
        note="Dinner on Friday",
    )
    assert created.status == 201, created.body
    assert created.body["state"] == "open"
    assert created.body["amount"] == "12.50"
    request = await incoming_request(pair.alice)
    assert request["note"] == "Dinner on Friday"
    assert request["payee"].endswith("/users/bob")

    status, transfer = await pay(pair.alice, request["id"], "key-1")
    assert status == 202
    assert transfer["state"] == "pending"
    assert await balance(pair.alice, "available") == "87.50"
    done = await settled(pair.alice, transfer["id"])
    assert done["state"] == "completed"
    assert done["receipt"]["verified"], done["receipt"]["problems"]
    assert done["receipt"]["decision"]["result"]["payer"] == transfer["payer"]

    # The same key is the same payment; another key cannot pay a paid request.
    assert (await pay(pair.alice, request["id"], "key-1"))[1]["id"] == transfer["id"]
    status, refused = await pay(pair.alice, request["id"], "key-2")
    assert status == 422
    assert "paid" in refused["error"]

    assert await balance(pair.alice) == "87.50"
    assert await balance(pair.bob) == "12.50"
    mine = await pair.bob.get(f"/api/kith/v1/payment_requests/{created.body['id']}")
    assert mine.body["state"] == "paid"
    history = await pair.bob.get("/api/kith/v1/wallet/transactions")
    assert [(t["direction"], t["amount"]) for t in history.body] == [("incoming", "12.50")]
    # The history's filters (the web wallet's too): direction, state, currency.
    for filters, count in (
        ({"direction": "outgoing"}, 0),
        ({"direction": "incoming", "state": "completed", "currency": "eur"}, 1),
        ({"state": "pending"}, 0),
        ({"currency": "USD"}, 0),
    ):
        found = await pair.bob.get("/api/kith/v1/wallet/transactions", **filters)
        assert len(found.body) == count, filters
    refused = await pair.bob.get("/api/kith/v1/wallet/transactions", direction="sideways")
    assert refused.status == 422
    bobs = await pair.bob.get(f"/api/kith/v1/transfers/{history.body[0]['id']}")
    assert bobs.body["receipt"]["verified"], bobs.body["receipt"]["problems"]
    # Both hear of it in their notifications, as Mastodon apps list them.
    asked = (await pair.alice.get("/api/v1/notifications")).body
    assert [(n["type"], n["account"]["acct"]) for n in asked] == [
        ("kith.payment_request", pair.bob_handle)
    ]
    paid = await pair.bob.get("/api/v1/notifications", **{"types[]": "kith.payment_received"})
    assert [(n["type"], n["account"]["acct"]) for n in paid.body] == [
        ("kith.payment_received", pair.alice_handle)
    ]
    await assert_money_conserved(pair.a, pair.b)


async def test_a_payer_on_a_server_without_kith_payments_gets_a_direct_message_with_the_link(
    pair: Pair, peer: Peer
) -> None:
    mastodon_user = peer.user("carol")
    await remember(pair.b, mastodon_user)
    created = await pair.bob.post(
        "/api/kith/v1/payment_requests",
        payer=mastodon_user.actor,
        amount="4.20",
        currency="EUR",
        note="the taxi",
    )
    assert created.status == 201, created.body
    link = created.body["uri"]

    async def notes() -> list[dict]:
        bodies = [json.loads(body) for _m, _p, _h, body in peer.posts()]
        return [b for b in bodies if b.get("type") == "Create"]

    create = (await eventually(notes))[0]
    note = create["object"]
    assert note["type"] == "Note"  # what Mastodon shows as a direct message
    assert note["to"] == [mastodon_user.actor]
    assert note["cc"] == []
    assert link in note["content"]
    assert "4.20 EUR" in note["content"]
    assert {"type": "Mention", "href": mastodon_user.actor}.items() <= note["tag"][0].items()

    async with pair.b.http.get(link, headers={"Accept": "application/activity+json"}) as answer:
        assert answer.status == 200
        document = json.loads(await answer.read())
    assert document["type"] == "PaymentRequest"
    assert document["proof"]
    async with pair.b.http.get(link, headers={"Accept": "text/html"}) as answer:
        page = await answer.text()
    assert answer.status == 200
    assert "4.20 EUR" in page
    assert "the taxi" in page
    async with pair.b.http.get(link + "x", headers={"Accept": "text/html"}) as answer:
        assert answer.status == 404


async def test_a_declined_request_cannot_be_paid_and_its_payee_hears_of_it(pair: Pair) -> None:
    created = await pair.bob.post(
        "/api/kith/v1/payment_requests", payer=pair.alice_handle, amount="5", currency="EUR"
    )
    request = await incoming_request(pair.alice)
    declined = await pair.alice.post(f"/api/kith/v1/payment_requests/{request['id']}/decline")
    assert declined.status == 200
    assert declined.body["state"] == "declined"

    async def payee_view() -> str:
        answer = await pair.bob.get(f"/api/kith/v1/payment_requests/{created.body['id']}")
        return answer.body["state"]

    await eventually(payee_view, lambda state: state == "declined")
    status, refused = await pay(pair.alice, request["id"], "k")
    assert status == 422
    assert "declined" in refused["error"]
    await assert_money_conserved(pair.a, pair.b)


async def test_the_payee_nodes_clock_decides_expiry_and_the_reservation_is_released(
    pair: Pair,
) -> None:
    await pair.bob.post(
        "/api/kith/v1/payment_requests",
        payer=pair.alice_handle,
        amount="20.00",
        currency="EUR",
        expires_in=120,
    )
    request = await incoming_request(pair.alice)
    pair.b.clock.advance(minutes=5)  # only the payee's node thinks it has expired
    status, transfer = await pay(pair.alice, request["id"], "late")
    assert status == 202
    done = await settled(pair.alice, transfer["id"])
    assert done["state"] == "rejected"
    assert done["error"]["code"] == "F06"
    assert await balance(pair.alice, "available") == "100.00"
    assert await balance(pair.bob) == "0.00"
    await assert_money_conserved(pair.a, pair.b)


async def test_a_cancelled_request_is_refused_by_its_node(pair: Pair) -> None:
    created = await pair.bob.post(
        "/api/kith/v1/payment_requests", payer=pair.alice_handle, amount="3.00", currency="EUR"
    )
    request = await incoming_request(pair.alice)
    cancelled = await pair.bob.post(f"/api/kith/v1/payment_requests/{created.body['id']}/cancel")
    assert cancelled.body["state"] == "cancelled"
    _, transfer = await pay(pair.alice, request["id"], "k")
    done = await settled(pair.alice, transfer["id"])
    assert done["error"]["code"] == "F99"
    assert await balance(pair.alice) == "100.00"
    await assert_money_conserved(pair.a, pair.b)


async def test_a_payment_beyond_the_payee_nodes_credit_limit_is_refused(pair: Pair) -> None:
    async with pair.b.db.transaction() as conn:
        await conn.execute(
            peer_limits.insert().values(
                peer=pair.a.config.domain,
                currency="EUR",
                credit_limit=10_00,
                updated_at=pair.b.clock(),
            )
        )
    await pair.bob.post(
        "/api/kith/v1/payment_requests", payer=pair.alice_handle, amount="12.50", currency="EUR"
    )
    request = await incoming_request(pair.alice)
    _, transfer = await pay(pair.alice, request["id"], "k")
    done = await settled(pair.alice, transfer["id"])
    assert done["error"]["code"] == "T04"
    assert await balance(pair.alice) == "100.00"
    sent = await pair.alice.request(
        "POST",
        "/api/kith/v1/transfers",
        json={"to": pair.bob_handle, "amount": "9.99", "currency": "EUR"},
    )
    assert (await settled(pair.alice, sent.body["id"]))["state"] == "completed"
    # The payee's node may also cap one payment from that node's users.
    async with pair.b.db.transaction() as conn:
        await peers.set_limits(
            conn, pair.a.config.domain, "EUR", 50_00, pair.b.clock(), transfer_max=5_00
        )
    too_big = await pair.alice.post(
        "/api/kith/v1/transfers", to=pair.bob_handle, amount="5.01", currency="EUR"
    )
    assert (await settled(pair.alice, too_big.body["id"]))["error"]["code"] == "F03"
    await assert_money_conserved(pair.a, pair.b)


async def test_money_sent_without_a_request_arrives_and_a_replayed_offer_moves_nothing(
    pair: Pair,
) -> None:
    sent = await pair.alice.request(
        "POST",
        "/api/kith/v1/transfers",
        json={"to": pair.bob_handle, "amount": "7.25", "currency": "EUR"},
        headers={"Idempotency-Key": "gift"},
    )
    assert sent.status == 202, sent.body
    assert (await settled(pair.alice, sent.body["id"]))["state"] == "completed"
    assert await balance(pair.bob) == "7.25"

    # The payer's node offers the same transfer again (a resend after a lost answer).
    async with pair.a.db.read() as conn:
        row = (await conn.execute(select(settlements))).one()
    offer = {
        "@context": json.loads(row.transfer)["@context"],
        "type": "Offer",
        "id": f"{row.uri}/offers/replayed",
        "actor": pair.a.config.base_url + "/actor",
        "to": [row.peer],
        "object": json.loads(row.transfer),
    }

    async def resend(conn, now) -> list[Outbound]:
        return [Outbound(offer, offer["actor"], (row.peer,), PRIORITY_DIRECT)]

    await pair.a.perform(resend)

    async def replay_done() -> int:
        async with pair.b.db.read() as conn:
            rows = await conn.execute(
                select(inbox_items.c.state).where(inbox_items.c.activity_id == offer["id"])
            )
            return [r.state for r in rows]

    assert await eventually(replay_done, lambda states: states and states[0] != "queued") == [
        "done"
    ]
    assert await balance(pair.bob) == "7.25"
    assert await balance(pair.alice) == "92.75"
    await assert_money_conserved(pair.a, pair.b)


async def test_the_payee_node_answers_an_offer_in_its_response_without_a_second_delivery(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kith.federation.inbox")
    sent = await pair.alice.post(
        "/api/kith/v1/transfers", to=pair.bob_handle, amount="3.00", currency="EUR"
    )
    assert (await settled(pair.alice, sent.body["id"]))["state"] == "completed"

    async def offers() -> list:
        async with pair.a.db.read() as conn:
            query = select(deliveries.c.wants_answer, deliveries.c.state)
            return (await conn.execute(query)).all()

    # The answer is taken as it comes; the delivery's own outcome is recorded with its batch.
    assert await eventually(offers, lambda rows: rows[0][1] != "queued") == [(True, "delivered")]
    async with pair.a.db.read() as conn:
        taken_in = (await conn.execute(select(inbox_items.c.activity_type))).scalars().all()
    async with pair.b.db.read() as conn:
        b_inbox = (await conn.execute(select(inbox_items.c.activity_type))).scalars().all()
        b_sent = (await conn.execute(select(deliveries.c.activity_id))).scalars().all()
    assert "Offer" not in b_inbox  # decided while the payer's node waited
    assert b_sent == []  # the decision went back in the response
    assert "Accept" not in taken_in
    # Signed with the payer node's Ed25519 key (RFC 9421), taken at the first knock.
    assert not [r for r in caplog.records if r.getMessage() == "inbox refused an activity"]
    assert await balance(pair.bob) == "3.00"
    await assert_money_conserved(pair.a, pair.b)


async def _waiting_for(client: ApiClient, state: str) -> list[dict]:
    async def listed() -> list[dict]:
        found = (await client.get("/api/kith/v1/wallet/transactions")).body
        return [t for t in found if t["state"] == state]

    return await eventually(listed)


async def test_money_that_must_be_accepted_waits_for_its_payee_and_goes_back_if_not_taken(
    nodes: NodeFactory,
) -> None:
    a = await nodes.start(payments__default_credit_limit="1000")
    b = await nodes.start(
        payments__default_credit_limit="1000", payments__transfer_acceptance_hours="24"
    )
    alice, bob = await client_for(a, "alice"), await client_for(b, "bob")
    await fund(a, "alice")
    to_bob = {"to": b.handle("bob"), "currency": "EUR"}

    # Taken: held (bob sees it incoming, alice's money reserved), then credited on accept.
    first = await alice.post("/api/kith/v1/transfers", amount="5.00", **to_bob)
    waiting = (await _waiting_for(bob, "awaiting_acceptance"))[0]
    assert waiting["accept_by"] is not None
    assert await balance(bob) == "0.00"
    assert await balance(bob, "incoming") == "5.00"
    assert (await alice.get(f"/api/kith/v1/transfers/{first.body['id']}")).body["state"] == (
        "pending"
    )
    taken = await bob.post(f"/api/kith/v1/transfers/{waiting['id']}/accept")
    assert taken.status == 200, taken.body
    assert taken.body["state"] == "completed"
    assert (await settled(alice, first.body["id"]))["state"] == "completed"
    assert await balance(bob) == "5.00"
    again = await bob.post(f"/api/kith/v1/transfers/{waiting['id']}/accept")
    assert again.status == 422  # once

    # Declined: straight back to alice.
    second = await alice.post("/api/kith/v1/transfers", amount="2.00", **to_bob)
    held = (await _waiting_for(bob, "awaiting_acceptance"))[0]
    assert (await bob.post(f"/api/kith/v1/transfers/{held['id']}/decline")).status == 200
    refused = await settled(alice, second.body["id"])
    assert refused["state"] == "rejected"
    assert refused["error"]["code"] == "F99"

    # Not taken in time: returned when the window has passed on the payee's node.
    third = await alice.post("/api/kith/v1/transfers", amount="3.00", **to_bob)
    await _waiting_for(bob, "awaiting_acceptance")
    for node in (a, b):
        node.clock.advance(hours=23)
    await b.perform(b.federation.payments.return_untaken)
    assert await balance(alice, "available") == "92.00"  # still reserved: 100 - 5 - 3
    for node in (a, b):
        node.clock.advance(hours=2)
    await b.perform(b.federation.payments.return_untaken)
    assert (await settled(alice, third.body["id"]))["state"] == "rejected"
    assert await balance(alice, "available") == "95.00"
    assert await balance(bob) == "5.00"
    assert await balance(bob, "incoming") == "0.00"
    await assert_money_conserved(a, b)
    async with a.db.read() as conn:
        assert await settlement.audit(conn) == []
    async with b.db.read() as conn:
        assert await settlement.audit(conn) == []


async def test_money_between_users_of_one_node_that_asks_for_acceptance_waits_too(
    nodes: NodeFactory,
) -> None:
    node = await nodes.start(payments__transfer_acceptance_hours="1")
    alice, carol = await client_for(node, "alice"), await client_for(node, "carol")
    await fund(node, "alice")
    sent = await alice.post("/api/kith/v1/transfers", to="carol", amount="1.25", currency="EUR")
    assert sent.body["state"] == "awaiting_acceptance"
    assert await balance(alice, "available") == "98.75"
    assert await balance(carol, "incoming") == "1.25"
    node.clock.advance(minutes=61)
    await node.perform(node.federation.payments.return_untaken)
    returned = (await alice.get(f"/api/kith/v1/transfers/{sent.body['id']}")).body
    assert returned["state"] == "rejected"
    assert await balance(alice, "available") == "100.00"
    assert await balance(carol, "incoming") == "0.00"
    taken = await alice.post("/api/kith/v1/transfers", to="carol", amount="2.00", currency="EUR")
    assert (await carol.post(f"/api/kith/v1/transfers/{taken.body['id']}/accept")).status == 200
    assert await balance(carol) == "2.00"
    assert await balance(alice) == "98.00"
    async with node.db.read() as conn:
        assert await ledger.audit(conn) == []
        assert await settlement.audit(conn) == []


async def test_a_payment_between_users_of_one_node_settles_at_once(pair: Pair) -> None:
    carol = await client_for(pair.a, "carol")
    created = await carol.post(
        "/api/kith/v1/payment_requests", payer="alice", amount="1.50", currency="EUR"
    )
    request = await incoming_request(pair.alice)
    assert request["id"] == created.body["id"]
    status, transfer = await pay(pair.alice, request["id"], "k")
    assert status == 200
    assert transfer["state"] == "completed"
    assert await balance(carol) == "1.50"
    receipt = (await pair.alice.get(f"/api/kith/v1/transfers/{transfer['id']}")).body["receipt"]
    assert receipt["verified"], receipt["problems"]
    await assert_money_conserved(pair.a, pair.b)


async def test_bad_payment_input_gets_a_reason_and_changes_nothing(pair: Pair) -> None:
    for fields, reason in [
        ({"payer": pair.bob_handle, "amount": 12.5, "currency": "EUR"}, "decimal string"),
        ({"payer": pair.bob_handle, "amount": "0", "currency": "EUR"}, "more than zero"),
        ({"payer": pair.bob_handle, "amount": "1.234", "currency": "EUR"}, "decimal places"),
        ({"payer": pair.bob_handle, "amount": "1", "currency": "XXQ"}, "unknown currency"),
        ({"payer": "alice", "amount": "1", "currency": "EUR"}, "yourself"),
        ({"payer": "nobody", "amount": "1", "currency": "EUR"}, "no account"),
    ]:
        answer = await pair.alice.post("/api/kith/v1/payment_requests", **fields)
        assert answer.status == 422, (fields, answer.body)
        assert reason in answer.body["error"], (fields, answer.body)
    too_much = await pair.alice.post(
        "/api/kith/v1/transfers", to=pair.bob_handle, amount="100.01", currency="EUR"
    )
    assert too_much.status == 422
    assert "enough" in too_much.body["error"]
    listed = await pair.alice.get("/api/kith/v1/payment_requests")
    assert listed.body == []
    assert await balance(pair.alice) == "100.00"
    await assert_money_conserved(pair.a, pair.b)


async def test_the_nodes_limits_on_one_payment_and_on_a_day_hold_on_both_sides(
    nodes: NodeFactory,
) -> None:
    a = await nodes.start(
        payments__default_credit_limit="1000", payments__transfer_max="50", payments__daily_max="60"
    )
    b = await nodes.start(payments__default_credit_limit="1000", payments__transfer_max="10")
    alice, bob = await client_for(a, "alice"), await client_for(b, "bob")
    carol = await client_for(a, "carol")
    await fund(a, "alice")

    async def send(to: str, amount: str) -> tuple[int, dict]:
        answer = await alice.post("/api/kith/v1/transfers", to=to, amount=amount, currency="EUR")
        return answer.status, answer.body

    status, body = await send("carol", "50.01")
    assert status == 422
    assert "limit for one payment" in body["error"]
    assert (await send("carol", "40.00"))[1]["state"] == "completed"
    status, body = await send("carol", "20.01")
    assert status == 422
    assert "one day" in body["error"]
    # Within our limits, above the payee node's: it refuses the payment, the money comes back.
    status, body = await send(b.handle("bob"), "12.00")
    assert status == 202
    done = await settled(alice, body["id"])
    assert done["error"]["code"] == "F03"
    assert await balance(alice) == "60.00"
    assert await balance(carol) == "40.00"
    assert await balance(bob) == "0.00"
    await assert_money_conserved(a, b)


async def test_a_payer_who_blocks_the_payee_receives_no_requests_from_them(pair: Pair) -> None:
    bob_at_a = await pair.a.federation.resolve_account(pair.bob_handle)
    alice = await pair.a.account("alice")
    # A block bob's node has not heard of (yet): alice's node refuses the request on arrival.
    async with pair.a.db.transaction() as conn:
        await graph.insert_block(conn, alice.id, bob_at_a.id, None, pair.a.clock())
    created = await pair.bob.post(
        "/api/kith/v1/payment_requests", payer=pair.alice_handle, amount="1", currency="EUR"
    )
    assert created.status == 201

    async def rejected() -> list[str]:
        async with pair.a.db.read() as conn:
            rows = await conn.execute(
                select(inbox_items.c.state, inbox_items.c.last_error).where(
                    inbox_items.c.activity_type == "Create"
                )
            )
            return [f"{row.state}: {row.last_error}" for row in rows]

    states = await eventually(rejected, lambda found: found and "queued" not in found[0])
    assert states == ["rejected: the payer blocks the payee (or the other way round)"]
    assert (await pair.alice.get("/api/kith/v1/payment_requests")).body == []

    # A block that has federated: bob's own node refuses to send one.
    await client_for(pair.a, "carol")
    carol = await pair.a.account("carol")
    await pair.a.perform(lambda conn, now: graph.block(conn, pair.a.urls, carol, bob_at_a, now))

    async def bobs_node_knows() -> bool:
        async with pair.b.db.read() as conn:
            return bool((await conn.execute(select(blocks.c.id))).first())

    await eventually(bobs_node_knows)
    refused = await pair.bob.post(
        "/api/kith/v1/payment_requests", payer=pair.a.handle("carol"), amount="1", currency="EUR"
    )
    assert refused.status == 422
    assert refused.body["error"] == "you cannot request money from this account"


async def _deliver_request_document(pair: Pair, document: dict, signer: str = "bob") -> str:
    """Node b delivers `document` to alice as if `signer` had created it; how a's inbox ended."""
    actor = pair.b.urls.actor(await pair.b.account(signer))
    create = {
        "@context": document["@context"],
        "type": "Create",
        "id": f"{actor}#forged/{uuid.uuid4().hex}",
        "actor": actor,
        "to": [pair.a.urls.actor(await pair.a.account("alice"))],
        "object": document,
    }

    async def send(conn, now) -> list[Outbound]:
        return [Outbound(create, actor, tuple(create["to"]), PRIORITY_DIRECT)]

    await pair.b.perform(send)

    async def outcome() -> list[str]:
        async with pair.b.db.read() as conn:
            sent = await conn.execute(
                select(deliveries.c.last_status).where(deliveries.c.activity_id == create["id"])
            )
            if sent.scalar_one_or_none() == 403:
                return ["refused at the inbox's door: 403"]
        async with pair.a.db.read() as conn:
            rows = await conn.execute(
                select(inbox_items.c.state, inbox_items.c.last_error).where(
                    inbox_items.c.activity_id == create["id"]
                )
            )
            return [f"{row.state}: {row.last_error}" for row in rows]

    found = await eventually(outcome, lambda states: states and "queued" not in states[0])
    return found[0]


async def test_forged_payment_requests_are_refused_and_never_stored(pair: Pair) -> None:
    await client_for(pair.b, "carol")
    created = await pair.bob.post(
        "/api/kith/v1/payment_requests", payer=pair.alice_handle, amount="2", currency="EUR"
    )
    async with pair.b.db.read() as conn:
        genuine = (await conn.execute(select(payment_requests))).one()
    document = json.loads(genuine.document)
    await incoming_request(pair.alice)  # the genuine one arrived

    tampered = {
        **document,
        "id": document["id"] + "0",
        "amount": {**document["amount"], "minor": "200000"},
    }
    assert "proof is not valid" in await _deliver_request_document(pair, tampered)

    carol = await pair.b.account("carol")
    carol_seed = await _seed_of(pair.b, carol.id)
    unsigned = {key: value for key, value in document.items() if key != "proof"}
    unsigned["id"] += "1"
    carols_key = f"{pair.b.urls.actor(carol)}#ed25519-key"
    signed_by_carol = sign_object(unsigned, carol_seed, carols_key, "2026-11-24T12:00:00Z")
    assert "not one of" in await _deliver_request_document(pair, signed_by_carol)

    someone_else = {**unsigned, "id": unsigned["id"] + "2"}
    someone_else["attributedTo"] = someone_else["payee"] = pair.b.urls.actor(carol)
    someone_else = sign_object(someone_else, carol_seed, carols_key, "2026-11-24T12:00:00Z")
    # Signed by carol but sent by bob: the inbox refuses it before storing anything.
    assert "403" in await _deliver_request_document(pair, someone_else)
    # Sent by carol, the request still bob's: refused at the door too.
    reused = {**unsigned, "id": unsigned["id"] + "3"}
    reused = sign_object(reused, carol_seed, carols_key, "2026-11-24T12:00:00Z")
    assert "403" in await _deliver_request_document(pair, reused, signer="carol")

    listed = (await pair.alice.get("/api/kith/v1/payment_requests")).body
    assert [r["uri"] for r in listed] == [created.body["uri"]]
    await assert_money_conserved(pair.a, pair.b)


async def _seed_of(node: Node, account_id: int) -> bytes:
    async with node.db.read() as conn:
        row = await conn.execute(
            select(account_keys.c.ed25519_seed).where(account_keys.c.account_id == account_id)
        )
        return bytes(row.scalar_one())


async def _statements(node: Node) -> list[tuple[str, str, str | None]]:
    async with node.db.read() as conn:
        rows = await conn.execute(
            select(
                peer_statements.c.role, peer_statements.c.state, peer_statements.c.problems
            ).order_by(peer_statements.c.id)
        )
        return [(row.role, row.state, row.problems) for row in rows]


async def test_netting_statements_are_countersigned_when_ledgers_agree_and_disputed_when_not(
    pair: Pair,
) -> None:
    await fund(pair.b, "bob")
    for sender, receiver, amount in ((pair.alice, pair.bob_handle, "7.00"),
                                     (pair.bob, pair.alice_handle, "2.50")):  # fmt: skip
        sent = await sender.post(
            "/api/kith/v1/transfers", to=receiver, amount=amount, currency="EUR"
        )
        assert (await settled(sender, sent.body["id"]))["state"] == "completed"
    issuer, other = sorted((pair.a, pair.b), key=lambda n: n.config.base_url + "/actor")
    for node in (pair.a, pair.b):
        node.clock.advance(minutes=11)

    async def propose(conn, now):
        return await issuer.federation.payments.propose_statement(
            conn, other.config.domain, "EUR", now
        )

    statement = await issuer.perform(propose)
    assert statement["sequence"] == 1
    assert len(statement["transfers"]) == 2
    await eventually(lambda: _statements(issuer), lambda found: found[-1][1] != "proposed")
    assert await _statements(issuer) == [("issuer", "agreed", None)]
    assert await _statements(other) == [("counterparty", "agreed", None)]

    # One more payment, then the other node's record of it is damaged.
    sent = await pair.alice.post(
        "/api/kith/v1/transfers", to=pair.bob_handle, amount="1.00", currency="EUR"
    )
    assert (await settled(pair.alice, sent.body["id"]))["state"] == "completed"
    async with other.db.transaction() as conn:
        await conn.execute(
            settlements.update()
            .where(settlements.c.uri == sent.body["uri"])
            .values(amount=settlements.c.amount + 1)
        )
    for node in (pair.a, pair.b):
        node.clock.advance(minutes=11)
    second = await issuer.perform(propose)
    assert second["sequence"] == 2
    assert second["previousStatement"]
    await eventually(lambda: _statements(issuer), lambda found: found[-1][1] != "proposed")
    _role, state, problems = (await _statements(issuer))[-1]
    assert state == "disputed"
    assert sent.body["uri"] in problems
    assert (await _statements(other))[-1][1] == "disputed"


async def test_streaming_clients_hear_requests_and_payments_with_their_live_state(
    pair: Pair,
) -> None:
    def connect(node: Node, client: ApiClient):  # type: ignore[no-untyped-def]
        return node.http.ws_connect(
            node.url("/api/v1/streaming?stream=user"),
            headers={"Authorization": f"Bearer {client.token}"},
        )

    async def next_payment_event(socket) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
        while True:
            message = json.loads((await asyncio.wait_for(socket.receive(), 5.0)).data)
            if message["event"].startswith("kith:"):
                return message["event"], json.loads(message["payload"])

    async def states(socket, count: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
        found = [await next_payment_event(socket) for _ in range(count)]
        return [(event, entity["state"]) for event, entity in found]

    async with connect(pair.a, pair.alice) as alices, connect(pair.b, pair.bob) as bobs:
        await asyncio.sleep(0.05)
        await pair.bob.post(
            "/api/kith/v1/payment_requests", payer=pair.alice_handle, amount="4.00", currency="EUR"
        )
        event, mine = await next_payment_event(bobs)
        assert (event, mine["direction"], mine["state"]) == (
            "kith:payment_request",
            "outgoing",
            "open",
        )
        event, request = await next_payment_event(alices)
        assert (event, request["direction"], request["state"]) == (
            "kith:payment_request", "incoming", "open",
        )  # fmt: skip
        await pay(pair.alice, request["id"], "stream")
        assert await states(alices, 4) == [
            ("kith:transfer", "pending"),
            ("kith:payment_request", "open"),
            ("kith:transfer", "completed"),
            ("kith:payment_request", "paid"),
        ]
        # On the payee's node: the money arrived, and the request is paid.
        assert await states(bobs, 2) == [
            ("kith:transfer", "completed"),
            ("kith:payment_request", "paid"),
        ]


async def test_statements_are_proposed_periodically_once_there_is_something_to_state(
    pair: Pair,
) -> None:
    issuer, other = sorted((pair.a, pair.b), key=lambda n: n.config.base_url + "/actor")
    await issuer.perform(issuer.federation.payments.propose_due)
    assert await _statements(issuer) == []  # no payment yet
    sent = await pair.alice.post(
        "/api/kith/v1/transfers", to=pair.bob_handle, amount="3.00", currency="EUR"
    )
    assert (await settled(pair.alice, sent.body["id"]))["state"] == "completed"
    await issuer.perform(issuer.federation.payments.propose_due)
    assert await _statements(issuer) == []  # decided too recently to be stated
    for node in (pair.a, pair.b):
        node.clock.advance(minutes=11)
    await issuer.perform(issuer.federation.payments.propose_due)
    await eventually(lambda: _statements(other), lambda found: found and found[0][1] == "agreed")
    for node in (pair.a, pair.b):
        node.clock.advance(minutes=61)
    await issuer.perform(issuer.federation.payments.propose_due)
    assert len(await _statements(issuer)) == 1  # nothing new: no empty statement
    await other.perform(other.federation.payments.propose_due)
    assert await _statements(other) == [("counterparty", "agreed", None)]  # it never proposes
