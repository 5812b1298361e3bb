"""`kith invite …`, `kith admin pending|approve|reject`, `kith user reset-password|set-email`
against a real database."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from server.cli_support import load
from server.clock import utcnow
from server.identity.accounts import create_account, find_account
from server.identity.keys import generate_actor_keys
from server.identity.registration import Policy, SignUp, create_sign_up
from server.identity.tokens import authenticate, create_token
from server.node import open_database
from tests.integration.conftest import Cli

PASSWORD = "correct horse battery\n"


class _Args:
    config = None


def _with_db(cli: Cli, work: Any) -> Any:
    """Run `work(conn)` in a transaction on the CLI's database."""

    async def run() -> Any:
        cli.monkeypatch.setenv("KITH_DATABASE__URL", cli.database_url)
        db = await open_database(load(_Args()), initialize_empty=True)
        try:
            async with db.transaction() as conn:
                return await work(conn)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _pending(cli: Cli, name: str, reason: str = "") -> None:
    """A sign-up waiting for approval, as POST /api/v1/accounts makes one."""
    keys = generate_actor_keys()

    async def work(conn: Any) -> None:
        sign_up = SignUp(name, "password1", f"{name}@example.com", True, reason=reason or None)
        await create_sign_up(conn, sign_up, Policy("approval"), keys, "x", utcnow())

    _with_db(cli, work)


def test_invites_are_created_listed_and_revoked_and_audited(cli: Cli) -> None:
    made = cli("invite", "create", "--uses", "2", "--expires-in", "7d", "--comment", "for Bo")
    assert made.code == 0, made.err
    code = re.search(r"^code: (\S+)$", made.out, re.M).group(1)  # type: ignore[union-attr]
    assert len(code) >= 20
    assert f"link: http://localhost:8080/invite/{code}" in made.out
    assert "admits: 0/2" in made.out
    assert 'instance.registrations is "closed"' in made.out
    forever = cli("invite", "create")
    assert "expires: never" in forever.out
    assert "admits: 0/any" in forever.out
    listed = cli("invite", "list").out
    assert code in listed
    assert "for Bo" in listed
    assert cli("invite", "revoke", code).code == 0
    assert code not in cli("invite", "list").out
    everything = cli("invite", "list", "--all").out
    assert re.search(rf"{re.escape(code)}\s+revoked", everything)
    again = cli("invite", "revoke", code)
    assert again.code == 1
    assert "already revoked" in again.err
    assert "no invite" in cli("invite", "revoke", "nope").err
    for bad in (("--uses", "0"), ("--expires-in", "soon"), ("--expires-in", "0d")):
        refused = cli("invite", "create", *bad)
        assert refused.code == 1, bad
    actions = [line.split()[3] for line in cli("admin", "log").out.splitlines()]
    assert actions == ["invite_revoke", "invite_create", "invite_create"]
    assert code not in cli("admin", "log").out  # the log never hands out a live code


def test_pending_sign_ups_are_listed_approved_and_rejected(cli: Cli) -> None:
    assert "no sign-ups waiting" in cli("admin", "pending").out
    _pending(cli, "alice", "I knit")
    _pending(cli, "mallory")
    listed = cli("admin", "pending").out
    assert "alice" in listed
    assert "alice@example.com" in listed
    assert "'I knit'" in listed
    assert "mallory" in listed
    assert re.search(r"alice\s+no\s+pending", cli("user", "list").out)
    assert cli("admin", "approve", "alice", "--reason", "knits").code == 0
    assert re.search(r"alice\s+no\s+active", cli("user", "list").out)
    again = cli("admin", "approve", "alice")
    assert again.code == 1
    assert "not waiting for approval" in again.err
    assert cli("admin", "reject", "mallory", "--reason", "spam").code == 0
    assert "mallory" not in cli("user", "list").out
    assert "no sign-ups waiting" in cli("admin", "pending").out
    log = cli("admin", "log").out.splitlines()
    assert [line.split()[3:5] for line in log] == [["reject", "mallory"], ["approve", "alice"]]
    assert all(line.split()[2] == "cli" for line in log)
    assert "no account nobody" in cli("admin", "approve", "nobody").err


def test_reset_password_sets_a_new_one_and_revokes_every_token(cli: Cli) -> None:
    assert cli("user", "create", "alice", "--password-stdin", stdin=PASSWORD).code == 0

    async def token(conn: Any) -> str:
        account = await find_account(conn, "alice")
        return await create_token(conn, account.id, ("read",), "t", utcnow())

    tokens = [_with_db(cli, token) for _ in range(2)]
    done = cli("user", "reset-password", "alice")
    assert done.code == 0, done.err
    assert "2 token(s) revoked" in done.out
    assert re.search(r"^password: \S{12,}$", done.out, re.M)

    async def live(conn: Any) -> list[bool]:
        return [await authenticate(conn, t, utcnow()) is not None for t in tokens]

    assert _with_db(cli, live) == [False, False]
    chosen = cli("user", "reset-password", "alice", "--password-stdin", stdin="new secret 42\n")
    assert chosen.code == 0
    assert "password:" not in chosen.out
    short = cli("user", "reset-password", "alice", "--password-stdin", stdin="short\n")
    assert short.code == 1
    assert "no account named 'bob'" in cli("user", "reset-password", "bob").err


def test_email_addresses_are_set_unique_ignoring_case_and_removed(cli: Cli) -> None:
    made = cli(
        "user",
        "create",
        "alice",
        "--email",
        "Alice@Example.com",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert made.code == 0, made.err
    assert "alice@example.com" in cli("user", "show", "alice").out
    clash = cli(
        "user", "create", "bob", "--email", "ALICE@example.com", "--password-stdin", stdin=PASSWORD
    )
    assert clash.code == 1
    assert "another account has the address" in clash.err
    assert cli("user", "create", "bob", "--password-stdin", stdin=PASSWORD).code == 0
    assert cli("user", "set-email", "bob", "alice@EXAMPLE.com").code == 1
    assert cli("user", "set-email", "bob", "bob@example.com").code == 0
    assert "not an email address" in cli("user", "set-email", "bob", "nope").err
    assert cli("user", "set-email", "alice").code == 0
    assert cli("user", "set-email", "bob", "alice@example.com").code == 0
    listed = cli("user", "list").out
    assert re.search(r"alice .* -$", listed, re.M)
    assert "bob" in listed


def test_config_check_never_shows_the_smtp_password(cli: Cli) -> None:
    shown = cli("config", "check", env={"KITH_SMTP__PASSWORD": "hunter2-secret"})
    assert shown.code == 0, shown.err
    assert "hunter2-secret" not in shown.out
    assert "password = '(set, not shown)'" in shown.out


def test_a_user_made_by_the_operator_is_approved(cli: Cli) -> None:
    keys = generate_actor_keys()

    async def work(conn: Any) -> bool:
        account = await create_account(conn, "carol", keys, utcnow(), password="password1")
        return account.approved

    assert _with_db(cli, work) is True
