"""`kith peers settle | settlements | confirm` against a real database."""

from __future__ import annotations

import asyncio
import os

from federation.actors import ActorDirectory
from payments import peer_settlements
from payments.receipts import public_key
from protocol import payments as wire
from protocol.actors import parse_actor
from protocol.proofs import sign_object
from server.cli_support import load
from server.clock import utcnow
from server.node import open_database
from server.paying import Payments
from server.storage.ids import new_id
from server.urls import Urls
from tests.integration.conftest import Cli
from tests.integration.test_cli_peers import _Args, _reserve_a_payment_nobody_answers

FAR_NODE = "https://far.example/actor"


def test_settling_refuses_bad_input_and_more_than_is_owed(cli: Cli) -> None:
    reference = ("--reference", "bank 1")
    for argv, reason in (
        (("far.example", "EUR", "1.234", *reference), "decimal places"),
        (("far.example", "EUR", "-1", *reference), "not a decimal"),
        (("far.example", "EUR", "0", *reference), "more than zero"),
        (("far/example", "EUR", "1", *reference), "not a host name"),
        (("far.example", "QQQ", "1", *reference), "unknown currency"),
        (("far.example", "EUR", "1", "--reference", "  "), "give your reference"),
        (("far.example", "EUR", "1", "--reference", "x" * 201), "1 to 200 characters"),
        (("far.example", "EUR", "1", *reference), "you owe far.example 0.00 EUR, less than"),
    ):
        refused = cli("peers", "settle", *argv)
        assert refused.code == 1, argv
        assert reason in refused.err, (argv, refused.err)
    assert "no settlements with far.example yet" in cli("peers", "settlements", "far.example").out


def test_a_settlement_to_a_node_whose_inbox_is_unknown_books_nothing(cli: Cli) -> None:
    uri = _reserve_a_payment_nobody_answers(cli)
    posted = cli("payments", "in-doubt", "--post", uri, "--reason", "the far operator said so")
    assert posted.code == 0, posted.err
    assert "-5.00" in cli("peers", "list").out  # we owe far.example 5.00
    refused = cli("peers", "settle", "far.example", "EUR", "3", "--reference", "bank 1")
    assert refused.code == 1
    assert "does not know far.example's inbox" in refused.err
    assert "-5.00" in cli("peers", "list").out
    assert cli("payments", "audit").code == 0


def _know_the_far_node(cli: Cli) -> None:
    """far.example's node actor stored as if fetched (its inbox is known)."""

    async def store() -> None:
        cli.monkeypatch.setenv("KITH_DATABASE__URL", cli.database_url)
        config = load(_Args())
        scheme = config.base_url.split("://", 1)[0]  # peers are reached as we are
        document = {
            "id": f"{scheme}://far.example/actor",
            "type": "Application",
            "preferredUsername": "far.example",
            "inbox": f"{scheme}://far.example/inbox",
        }
        db = await open_database(config, initialize_empty=False)
        try:
            directory = ActorDirectory(db, None, utcnow, new_id)  # type: ignore[arg-type]
            async with db.transaction() as conn:
                await directory.store(conn, parse_actor(document), document, utcnow())
        finally:
            await db.dispose()

    asyncio.run(store())


def test_a_settlement_is_booked_once_and_queued_for_the_peer(cli: Cli) -> None:
    uri = _reserve_a_payment_nobody_answers(cli)
    assert cli("payments", "in-doubt", "--post", uri, "--reason", "they said so").code == 0
    _know_the_far_node(cli)
    settled = cli("peers", "settle", "far.example", "EUR", "3", "--reference", "bank 1")
    assert settled.code == 0, settled.err
    assert "you paid far.example 3.00 EUR: booked" in settled.out
    assert "-2.00" in cli("peers", "list").out
    again = cli("peers", "settle", "far.example", "EUR", "3", "--reference", "bank 1")
    assert again.code == 0, again.err
    assert "already recorded: nothing booked this time" in again.out
    assert "-2.00" in cli("peers", "list").out
    other = cli("peers", "settle", "far.example", "EUR", "1", "--reference", "bank 1")
    assert other.code == 1
    assert "already names another settlement" in other.err
    listed = cli("peers", "settlements", "far.example").out
    assert listed.split()[2:6] == ["paid", "3.00", "EUR", "sent"]
    assert "'bank 1'" in listed
    refused = cli("peers", "confirm", settled.out.split()[-1])
    assert refused.code == 1
    assert "this node sent" in refused.err
    assert cli("payments", "audit").code == 0


def _receive_a_settlement(cli: Cli, minor: int) -> str:
    """far.example's node says its operator paid ours; stored unconfirmed, as from the inbox."""

    async def receive() -> str:
        cli.monkeypatch.setenv("KITH_DATABASE__URL", cli.database_url)
        config = load(_Args())
        db = await open_database(config, initialize_empty=False)
        try:
            urls = Urls(base_url=config.base_url, domain=config.domain)
            payments = Payments(config, db, urls, utcnow, directory=None)  # type: ignore[arg-type]
            node = await payments.node_key()
            seed, key_id = os.urandom(32), f"{FAR_NODE}#ed25519-key"
            document = wire.build_settlement(
                wire.PeerSettlement(
                    "https://far.example/payments/settlements/Tq0kX2",
                    FAR_NODE,
                    node.actor,
                    wire.Amount("EUR", minor, 2),
                    "far bank 77",
                    utcnow(),
                )
            )
            create = {
                "type": "Create",
                "id": "https://far.example/payments/settlements/Tq0kX2/activity",
                "actor": FAR_NODE,
                "object": sign_object(document, seed, key_id, "2026-12-06T10:00:00Z"),
            }
            async with db.transaction() as conn:
                record, _ = await peer_settlements.settlement_received(
                    conn, node, create, FAR_NODE, {key_id: public_key(seed)}, payments.policy,
                    utcnow(), new_id,
                )  # fmt: skip
            return record.uri
        finally:
            await db.dispose()

    return asyncio.run(receive())


def test_a_received_settlement_is_confirmed_once(cli: Cli) -> None:
    missing = cli("peers", "confirm", "https://far.example/payments/settlements/nope")
    assert missing.code == 1
    assert "no settlement https://far.example/payments/settlements/nope here" in missing.err
    uri = _receive_a_settlement(cli, 12_00)
    listed = cli("peers", "settlements", "far.example")
    assert "received" in listed.out
    assert "unconfirmed" in listed.out
    assert uri in listed.out
    assert "no money has moved" in cli("peers", "list").out  # nothing booked yet

    confirmed = cli("peers", "confirm", uri)
    assert confirmed.code == 0, confirmed.err
    assert "confirmed 12.00 EUR from far.example" in confirmed.out
    assert "-12.00" in cli("peers", "list").out  # we now owe far.example what it paid us
    again = cli("peers", "confirm", uri)
    assert again.code == 1
    assert "already confirmed" in again.err
    assert " confirmed " in cli("peers", "settlements", "far.example").out
    audit = cli("payments", "audit")
    assert audit.code == 0, audit.out
