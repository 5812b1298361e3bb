"""`kith status` against a real database, with no node running: queues, failing hosts,
payments in doubt, open requests and the last statement per peer, as text and as JSON."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta

from sqlalchemy import insert, update

from federation.tables import deliveries, hosts
from payments import parties, settlement
from payments.tables import peer_statements, settlements
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


def _troubles(cli: Cli) -> str:
    """A payment nobody answers (eight days old), a delivery due for five minutes, a host
    failing for three days, and a disputed statement; returns the payment's id."""
    result = cli("user", "create", "alice", "--password-stdin", stdin="correct horse battery\n")
    assert result.code == 0, result.err
    assert cli("wallet", "deposit", "alice", "20", "EUR").code == 0

    async def make() -> str:
        cli.monkeypatch.setenv("KITH_DATABASE__URL", cli.database_url)
        config = load(_Args())
        db = await open_database(config, initialize_empty=False)
        now = utcnow()
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
                    payments.policy, now, new_id,
                )  # fmt: skip
                await conn.execute(update(settlements).values(created_at=now - timedelta(days=8)))
                await conn.execute(insert(deliveries), [_delivery(now - timedelta(minutes=5))])
                await conn.execute(insert(hosts), [_failing_host(now)])
                await conn.execute(insert(peer_statements), [_statement(now)])
            return record.uri
        finally:
            await db.dispose()

    return asyncio.run(make())


def _delivery(due: datetime) -> dict[str, object]:
    return {
        "id": 77,
        "activity_id": "https://here.example/activities/1",
        "inbox_url": "https://dead.example/inbox",
        "host": "dead.example",
        "signer_uri": "https://here.example/actor",
        "body": "{}",
        "priority": 5,
        "state": "queued",
        "attempts": 3,
        "created_at": due - timedelta(hours=1),
        "next_attempt_at": due,
        "wants_answer": False,
    }


def _failing_host(now: datetime) -> dict[str, object]:
    return {
        "host": "dead.example",
        "is_unavailable": False,
        "failure_days": 3,
        "first_failure_at": now - timedelta(days=3),
        "last_failure_at": now - timedelta(minutes=5),
        "last_success_at": None,
    }


def _statement(now: datetime) -> dict[str, object]:
    return {
        "id": 88,
        "uri": "https://far.example/statements/4",
        "peer": FAR_NODE,
        "currency": "EUR",
        "role": "counterparty",
        "sequence": 4,
        "state": "disputed",
        "as_of": now - timedelta(hours=1),
        "document": "{}",
        "created_at": now,
        "updated_at": now,
    }


def test_status_needs_a_database_and_reports_a_quiet_node(cli: Cli) -> None:
    assert cli("status").code == 1  # nothing to read yet: it does not create a database
    assert (
        cli("user", "create", "bob", "--password-stdin", stdin="correct horse battery\n").code == 0
    )
    quiet = cli("status")
    assert quiet.code == 0, quiet.err
    assert "inbox: 0 queued, 0 failed" in quiet.out
    assert "deliveries: 0 queued, 0 due" in quiet.out
    assert "failing hosts: none" in quiet.out
    assert "payments in doubt: none" in quiet.out
    assert "last statements: none" in quiet.out


def test_status_shows_queued_deliveries_failing_hosts_and_payments_in_doubt(cli: Cli) -> None:
    uri = _troubles(cli)
    shown = cli("status")
    assert shown.code == 0, shown.err
    assert "deliveries: 1 queued, 1 due, oldest due since" in shown.out
    assert "(5 min)" in shown.out
    assert "failing hosts: 1" in shown.out
    assert "dead.example" in shown.out
    assert "failing         3" in shown.out
    assert "payments in doubt: 1" in shown.out
    assert uri in shown.out
    assert re.search(r"5\.00 EUR +to https://far\.example/users/zed", shown.out)
    assert "payment requests open: 0" in shown.out
    assert "https://far.example/actor" in shown.out
    assert "disputed" in shown.out

    as_json = cli("status", "--json")
    assert as_json.code == 0, as_json.err
    status = json.loads(as_json.out)
    assert status["deliveries"]["queued"] == 1
    assert status["deliveries"]["due"] == 1
    assert 300 <= status["deliveries"]["oldest_due_seconds"] < 360
    assert status["inbox"] == {"queued": 0, "failed": 0, "oldest_due_at": None}
    (host,) = status["failing_hosts"]
    assert host["host"] == "dead.example"
    assert host["failure_days"] == 3
    assert host["is_unavailable"] is False
    assert host["last_failure_at"] is not None
    (doubt,) = status["payments_in_doubt"]
    assert doubt["uri"] == uri
    assert (doubt["amount"], doubt["currency"]) == ("5.00", "EUR")
    assert status["payment_requests_open"] == 0
    (statement,) = status["last_statements"]
    assert (statement["peer"], statement["sequence"], statement["state"]) == (
        FAR_NODE,
        4,
        "disputed",
    )
