"""`kith wallet …` and `kith payments audit` against a real database."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from payments.tables import ledger_accounts
from server.cli_support import load
from server.node import open_database
from tests.integration.conftest import Cli


def _create_user(cli: Cli, name: str) -> None:
    result = cli("user", "create", name, "--password-stdin", stdin="correct horse battery\n")
    assert result.code == 0, result.err


def test_deposit_withdraw_balance_and_history(cli: Cli) -> None:
    _create_user(cli, "alice")
    deposited = cli("wallet", "deposit", "alice", "12.50", "EUR", "--reference", "bank-1")
    assert deposited.code == 0, deposited.err
    assert "balance: 12.50 EUR" in deposited.out
    # The same reference again (the operator retrying after a crash): nothing moves twice.
    again = cli("wallet", "deposit", "alice", "12.50", "EUR", "--reference", "bank-1")
    assert again.code == 0
    assert "already done" in again.out
    assert "balance: 12.50 EUR" in again.out
    assert cli("wallet", "deposit", "alice", "500", "JPY").code == 0

    withdrawn = cli("wallet", "withdraw", "alice", "2.25", "EUR")
    assert withdrawn.code == 0, withdrawn.err
    assert "balance: 10.25 EUR" in withdrawn.out
    too_much = cli("wallet", "withdraw", "alice", "10.26", "EUR")
    assert too_much.code == 1
    assert "does not hold that much" in too_much.err

    balance = cli("wallet", "balance", "alice")
    assert "EUR" in balance.out
    assert "10.25" in balance.out
    assert "JPY" in balance.out
    assert "500" in balance.out
    history = cli("wallet", "history", "alice")
    assert history.code == 0
    for shown in ("-2.25", "12.50", "deposit:bank-1"):
        assert shown in history.out

    audit = cli("payments", "audit")
    assert audit.code == 0, audit.out
    assert "consistent" in audit.out


def test_bad_amounts_currencies_and_names_are_refused_with_a_reason(cli: Cli) -> None:
    _create_user(cli, "alice")
    for argv, reason in (
        (("alice", "12.505", "EUR"), "2 decimal places"),
        (("alice", "1.5", "JPY"), "0 decimal places"),
        (("alice", "-3", "EUR"), "not a decimal amount"),
        (("alice", "0", "EUR"), "more than zero"),
        (("alice", "1e3", "EUR"), "not a decimal amount"),
        (("alice", "10", "XYZ"), "unknown currency"),
        (("nobody", "10", "EUR"), "no local user"),
    ):
        result = cli("wallet", "deposit", *argv)
        assert result.code == 1, argv
        assert reason in result.err, (argv, result.err)
    assert "no wallet yet" in cli("wallet", "balance", "alice").out


def test_audit_names_a_balance_that_disagrees_with_the_transfers(cli: Cli) -> None:
    _create_user(cli, "alice")
    assert cli("wallet", "deposit", "alice", "5", "EUR").code == 0

    async def tamper() -> None:
        cli.monkeypatch.setenv("KITH_DATABASE__URL", cli.database_url)
        db = await open_database(load(_Args()), initialize_empty=False)
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    update(ledger_accounts)
                    .where(ledger_accounts.c.owner != "external")
                    .values(credits_posted=ledger_accounts.c.credits_posted + 1)
                )
        finally:
            await db.dispose()

    asyncio.run(tamper())
    audit = cli("payments", "audit")
    assert audit.code == 1
    assert "NOT consistent" in audit.out
    assert "EUR: balances sum to 1, not zero" in audit.out


class _Args:
    config = None


def test_a_community_currency_from_the_config_has_its_own_scale(cli: Cli) -> None:
    _create_user(cli, "alice")
    community = {"KITH_PAYMENTS__COMMUNITY_CURRENCIES": "HOURS:0"}
    refused = cli("wallet", "deposit", "alice", "1.5", "HOURS", env=community)
    assert refused.code == 1
    assert "0 decimal places" in refused.err
    deposited = cli("wallet", "deposit", "alice", "3", "HOURS", env=community)
    assert deposited.code == 0, deposited.err
    assert "balance: 3 HOURS" in deposited.out
    assert "unknown currency" in cli("wallet", "deposit", "alice", "3", "HOURS").err
