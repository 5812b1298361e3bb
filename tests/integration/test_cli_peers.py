"""`kith peers …` and `kith payments in-doubt` against a real database."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update

from payments import parties, settlement
from payments.tables import settlements
from protocol.payments import Amount
from server.cli_support import load
from server.clock import utcnow
from server.identity.accounts import find_account
from server.node import open_database
from server.paying import Payments
from server.storage.ids import new_id
from server.urls import Urls
from tests.integration.conftest import Cli

FAR_NODE = "https://far.example/actor"


class _Args:
    config = None


def test_a_peer_limit_is_set_listed_and_checked(cli: Cli) -> None:
    assert "no money has moved" in cli("peers", "list").out
    limited = cli("peers", "limit", "far.example", "EUR", "250.00")
    assert limited.code == 0, limited.err
    assert "far.example may now owe you up to 250.00 EUR" in limited.out
    listed = cli("peers", "list")
    assert "far.example" in listed.out
    assert "250.00" in listed.out
    capped = cli("peers", "limit", "far.example", "EUR", "250", "--max-payment", "20")
    assert "each payment from its users at most 20.00 EUR" in capped.out
    assert "20.00" in cli("peers", "list").out
    for argv, reason in (
        (("far.example", "EUR", "1.234"), "decimal places"),
        (("far.example", "EUR", "-1"), "not a decimal"),
        (("far/example", "EUR", "1"), "not a host name"),
        (("far.example", "QQQ", "1"), "unknown currency"),
    ):
        refused = cli("peers", "limit", *argv)
        assert refused.code == 1, argv
        assert reason in refused.err, (argv, refused.err)


def _reserve_a_payment_nobody_answers(cli: Cli) -> str:
    """Alice pays someone on an unreachable node; the reservation is eight days old."""
    result = cli("user", "create", "alice", "--password-stdin", stdin="correct horse battery\n")
    assert result.code == 0, result.err
    assert cli("wallet", "deposit", "alice", "20", "EUR").code == 0

    async def reserve() -> str:
        cli.monkeypatch.setenv("KITH_DATABASE__URL", cli.database_url)
        config = load(_Args())
        db = await open_database(config, initialize_empty=False)
        try:
            async with db.transaction() as conn:
                urls = Urls(base_url=config.base_url, domain=config.domain)
                payments = Payments(config, db, urls, utcnow, directory=None)  # type: ignore[arg-type]
                alice = await find_account(conn, "alice")
                assert alice is not None
                record, _ = await settlement.send_transfer(
                    conn, await payments.node_key(), payments.party(alice),
                    parties.Party("https://far.example/users/zed"), FAR_NODE,
                    Amount("EUR", 5_00, 2), payments.transfer_uri(alice, None),
                    payments.policy, utcnow(), new_id,
                )  # fmt: skip
                await conn.execute(
                    update(settlements).values(created_at=utcnow() - timedelta(days=8))
                )
            return record.uri
        finally:
            await db.dispose()

    return asyncio.run(reserve())


def test_an_unanswered_payment_is_listed_in_doubt_and_released_only_by_the_operator(
    cli: Cli,
) -> None:
    uri = _reserve_a_payment_nobody_answers(cli)
    listed = cli("payments", "in-doubt")
    assert listed.code == 1
    assert uri in listed.out
    assert "5.00 EUR" in listed.out
    assert "15.00" in cli("wallet", "balance", "alice").out  # available: still reserved
    assert "say why" in cli("payments", "in-doubt", "--void", uri).err
    released = cli("payments", "in-doubt", "--void", uri, "--reason", "ticket 42: never arrived")
    assert released.code == 0, released.err
    assert "voided" in released.out
    assert "ticket 42" in released.out
    assert "already voided" in cli("payments", "in-doubt", "--post", uri, "--reason", "x").err
    assert cli("payments", "in-doubt").code == 0
    audit = cli("payments", "audit")
    assert audit.code == 0, audit.out
    assert "20.00" in cli("wallet", "balance", "alice").out


def test_statements_are_listed_and_only_the_proposing_node_proposes(cli: Cli) -> None:
    assert "no statements with aaa.example yet" in cli("peers", "statement", "aaa.example").out
    refused = cli("peers", "statement", "aaa.example", "EUR")
    assert refused.code == 1
    assert "proposed by that node" in refused.err
    unknown = cli("peers", "statement", "zzz.example", "EUR")
    assert unknown.code == 1
    assert "has not dealt with zzz.example" in unknown.err
    assert "no statements with zzz.example" in cli("peers", "statement", "zzz.example").out
