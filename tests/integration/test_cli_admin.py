"""`kith admin …` against a real database: domain blocks, account actions, the audit log."""

from __future__ import annotations

import asyncio

from server.cli_support import load
from server.clock import utcnow
from server.identity.accounts import find_account
from server.node import open_database
from server.social.reports import create_report
from server.urls import Urls
from tests.integration.conftest import Cli


class _Args:
    config = None


def _user(cli: Cli, name: str) -> None:
    created = cli("user", "create", name, "--password-stdin", stdin="correct horse battery\n")
    assert created.code == 0, created.err


def test_domain_blocks_are_added_changed_listed_lifted_and_audited(cli: Cli) -> None:
    assert "no domain blocks" in cli("admin", "domain-blocks").out
    done = cli("admin", "domain-block", "Spam.Example", "--severity", "silence", "--reason", "ads")
    assert done.code == 0, done.err
    assert "spam.example: silence" in done.out
    assert cli("admin", "domain-block", "spam.example", "--severity", "suspend").code == 0
    assert cli("admin", "domain-block", "pics.example", "--severity", "reject-media").code == 0
    listed = cli("admin", "domain-blocks").out
    assert "spam.example" in listed
    assert "suspend" in listed
    assert "pics.example" in listed
    assert "reject-media" in listed
    assert cli("admin", "domain-unblock", "spam.example").code == 0
    refused = cli("admin", "domain-unblock", "spam.example")
    assert refused.code == 1
    assert "not blocked" in refused.err
    assert "spam.example" not in cli("admin", "domain-blocks").out
    bad = cli("admin", "domain-block", "not a domain")
    assert bad.code == 1
    assert "not a domain name" in bad.err
    log = cli("admin", "log").out.splitlines()
    assert [line.split()[3] for line in log] == [
        "domain_unblock",
        "domain_block:noop:reject_media",
        "domain_block:suspend",
        "domain_block:silence",
    ]
    assert all(line.split()[2] == "cli" for line in log)
    assert "ads" in log[-1]


def test_account_actions_apply_to_local_users_and_are_audited(cli: Cli) -> None:
    _user(cli, "alice")
    for action in ("silence", "unsilence", "suspend", "unsuspend", "grant", "delete"):
        done = cli("admin", action, "alice", "--reason", f"why {action}")
        assert done.code == 0, (action, done.err)
    assert "deleted" in cli("user", "list").out
    again = cli("admin", "delete", "alice")
    assert again.code == 1
    assert "live local user" in again.err
    missing = cli("admin", "suspend", "nobody")
    assert missing.code == 1
    assert "no account nobody" in missing.err
    actions = [line.split()[3] for line in cli("admin", "log").out.splitlines()]
    assert actions == ["delete", "grant_admin", "unsuspend", "suspend", "unsilence", "silence"]


def test_reports_are_listed_and_an_unknown_one_is_refused(cli: Cli) -> None:
    assert "no open reports" in cli("admin", "reports").out
    assert "no resolved reports" in cli("admin", "reports", "--resolved").out
    missing = cli("admin", "report", "42", "--resolve")
    assert missing.code == 1
    assert "no report 42" in missing.err


def _report(cli: Cli, reporter: str, target: str, comment: str) -> int:
    """A user's report, filed as the API files it."""

    async def file() -> int:
        cli.monkeypatch.setenv("KITH_DATABASE__URL", cli.database_url)
        config = load(_Args())
        db = await open_database(config, initialize_empty=False)
        try:
            async with db.transaction() as conn:
                urls = Urls(base_url=config.base_url, domain=config.domain)
                by, about = await find_account(conn, reporter), await find_account(conn, target)
                assert by is not None
                assert about is not None
                report, _ = await create_report(
                    conn, urls, by, about, [], comment, "spam", False, utcnow()
                )
            return report.id
        finally:
            await db.dispose()

    return asyncio.run(file())


def test_a_report_is_listed_resolved_and_a_local_one_cannot_be_forwarded(cli: Cli) -> None:
    _user(cli, "alice")
    _user(cli, "bob")
    report_id = _report(cli, "alice", "bob", "buy my stuff")
    listed = cli("admin", "reports").out
    assert f"#{report_id}" in listed
    assert "about bob by alice: 'buy my stuff'" in listed
    local = cli("admin", "report", str(report_id), "--forward")
    assert local.code == 1
    assert "only a report about a remote account" in local.err
    assert cli("admin", "report", str(report_id), "--resolve").code == 0
    assert "no open reports" in cli("admin", "reports").out
    assert f"#{report_id}" in cli("admin", "reports", "--resolved").out
    assert "report_resolve" in cli("admin", "log").out
