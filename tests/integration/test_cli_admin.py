"""`kith admin …` against a real database: domain blocks, account actions, the audit log."""

from __future__ import annotations

from tests.integration.conftest import Cli


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
