"""`kith admin …`: moderation from the command line (server/moderation.py, reports.py), and
sign-ups waiting for approval (server/identity/registration.py).

The commands write to the database; a running node applies domain blocks and suspensions
within 30 seconds (its inbox, fetcher and delivery reload them) and sends what they queue
(a Delete, a forwarded Flag). Every action is recorded in the audit log as "cli".
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.delivery import enqueue
from server import moderation
from server.cli_support import CommandError, load, say, with_database
from server.clock import utcnow
from server.config import Config
from server.identity import registration
from server.identity.accounts import Account, find_account, get_account
from server.identity.registration import RegistrationError
from server.moderation import ModerationError
from server.social import reports
from server.social.remote_accounts import known_account
from server.storage.engine import Database
from server.storage.ids import new_id
from server.storage.tables import accounts
from server.urls import Urls

CLI = "cli"
_SEVERITY = {"silence": "silence", "suspend": "suspend", "reject-media": "noop"}


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    admin = commands.add_parser(
        "admin", help="moderation: domain blocks, accounts, reports, sign-ups awaiting approval"
    )
    sub = admin.add_subparsers(title="admin commands", metavar="COMMAND", required=True)
    block = sub.add_parser(
        "domain-block",
        parents=[common],
        help="silence or suspend a domain (and its subdomains), or reject its media",
    )
    block.add_argument("domain")
    block.add_argument("--severity", choices=sorted(_SEVERITY), default="suspend")
    block.add_argument("--reject-media", action="store_true", help="also reject its media")
    block.add_argument("--reason", help="why (kept in the audit log)")
    block.set_defaults(run=cmd_domain_block)
    unblock = sub.add_parser("domain-unblock", parents=[common], help="lift a domain block")
    unblock.add_argument("domain")
    unblock.set_defaults(run=cmd_domain_unblock)
    sub.add_parser("domain-blocks", parents=[common], help="list domain blocks").set_defaults(
        run=cmd_domain_blocks
    )
    for name, verb in (
        ("suspend", "lock a user out (a remote account: purge its content, drop its activities)"),
        ("unsuspend", "lift a suspension"),
        ("silence", "keep an account off public timelines; its follows need approval"),
        ("unsilence", "lift a silence"),
        ("delete", "delete a local user: posts and follows go, peers get Delete(Person)"),
        ("grant", "make a local user an admin (the admin API's admin:read/admin:write)"),
        ("approve", "let in a sign-up waiting for approval (see `kith admin pending`)"),
        ("reject", "turn away a sign-up waiting for approval: the account is deleted"),
    ):
        command = sub.add_parser(name, parents=[common], help=verb)
        command.add_argument("account", help="local username or user@host")
        command.add_argument("--reason", help="why (kept in the audit log)")
        command.set_defaults(run=cmd_account, action=name)
    sub.add_parser(
        "pending", parents=[common], help="list sign-ups waiting for approval"
    ).set_defaults(run=cmd_pending)
    listed = sub.add_parser("reports", parents=[common], help="list open reports")
    listed.add_argument("--resolved", action="store_true", help="list resolved ones instead")
    listed.set_defaults(run=cmd_reports)
    one = sub.add_parser("report", parents=[common], help="resolve or forward a report")
    one.add_argument("id", type=int)
    way = one.add_mutually_exclusive_group(required=True)
    way.add_argument("--resolve", action="store_true")
    way.add_argument("--forward", action="store_true", help="send it to the account's server")
    one.set_defaults(run=cmd_report)
    log = sub.add_parser("log", parents=[common], help="the audit log of moderation actions")
    log.add_argument("--limit", type=int, default=100, help="newest first (default 100)")
    log.set_defaults(run=cmd_log)


Work = Callable[[AsyncConnection, Config, datetime], Awaitable[Any]]


async def _run(args: argparse.Namespace, work: Work) -> int:
    """Run one action in a transaction, queueing the deliveries it returns."""
    config = load(args)

    async def run(db: Database) -> int:
        now = utcnow()
        try:
            async with db.transaction() as conn:
                outbound = await work(conn, config, now) or []
                for item in outbound:
                    await enqueue(conn, item, new_id, now)
        except ModerationError as exc:
            raise CommandError(str(exc)) from None
        return 0

    return await with_database(config, run)


async def cmd_domain_block(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config, now: datetime) -> None:
        severity = _SEVERITY[args.severity]
        reject_media = args.reject_media or args.severity == "reject-media"
        block = await moderation.block_domain(
            conn, args.domain, severity, CLI, now, reject_media, args.reason
        )
        say(f"{block.domain}: {args.severity}" + (" (media rejected)" if reject_media else ""))

    return await _run(args, work)


async def cmd_domain_unblock(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config, now: datetime) -> None:
        if not await moderation.unblock_domain(conn, args.domain, CLI, now):
            raise ModerationError(f"{args.domain} is not blocked")
        say(f"{moderation.normalize_domain(args.domain)}: unblocked")

    return await _run(args, work)


async def cmd_domain_blocks(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config, now: datetime) -> None:
        found = await moderation.domain_block_list(conn)
        if not found:
            say("no domain blocks")
        for block in found:
            media = "reject-media" if block.reject_media else ""
            when = block.created_at.strftime("%Y-%m-%d %H:%M")
            say(f"{block.domain:<40} {block.severity:<8} {media:<12} {when}  {block.reason or ''}")

    return await _run(args, work)


async def _account(conn: AsyncConnection, config: Config, handle: str) -> Account:
    """A local user by name or a known remote account by user@host."""
    urls = Urls(config.base_url, config.domain)
    name, _, host = handle.lstrip("@").partition("@")
    if not host or host.lower() == config.domain:
        account = await find_account(conn, name)
    else:
        account = await known_account(conn, urls, handle.lstrip("@"))
    if account is None or account.is_instance_actor:
        raise ModerationError(f"no account {handle} on this node")
    return account


async def cmd_account(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config, now: datetime) -> list:
        account = await _account(conn, config, args.account)
        outbound = await act_on_account(conn, config, account, args.action, args.reason, now)
        say(f"{args.account}: {args.action} done")
        return outbound

    return await _run(args, work)


async def act_on_account(
    conn: AsyncConnection,
    config: Config,
    account: Account,
    action: str,
    reason: str | None,
    now: datetime,
    who: str = CLI,
) -> list:
    """One account action by name, as `kith admin ACTION ACCOUNT` takes it."""
    urls = Urls(config.base_url, config.domain)
    if action == "suspend":
        return await moderation.suspend_account(conn, account, who, now, reason, urls)
    if action == "unsuspend":
        return await moderation.unsuspend_account(conn, account, who, now, reason, urls)
    if action in ("silence", "unsilence"):
        await moderation.silence_account(conn, account, who, now, reason, action == "silence")
    elif action == "delete":
        return await moderation.delete_local_account(conn, urls, account, who, now, reason)
    elif action in ("approve", "reject"):
        decide = registration.approve if action == "approve" else registration.reject
        try:
            await decide(conn, account, who, now, reason)
        except RegistrationError as exc:
            raise ModerationError(str(exc)) from None
    elif action == "grant":
        if not account.is_local:
            raise ModerationError("only a local user can be an admin")
        await conn.execute(
            update(accounts).where(accounts.c.id == account.id).values(is_admin=True)
        )
        await moderation.record(conn, who, "grant_admin", account.acct, reason, now)
    return []


async def cmd_pending(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config, now: datetime) -> None:
        found = await registration.pending_accounts(conn)
        if not found:
            say("no sign-ups waiting for approval")
        records = await registration.sign_up_records(conn, [a.id for a in found])
        for account in found:
            record = records.get(account.id)
            say(
                f"{account.username:<30} {account.created_at:%Y-%m-%d %H:%M}  "
                f"{account.email or '-':<30} {record.ip if record and record.ip else '-':<15} "
                f"{(record.reason if record else None) or ''!r}"
            )

    return await _run(args, work)


async def cmd_reports(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config, now: datetime) -> None:
        found = await reports.list_reports(conn, resolved=args.resolved)
        if not found:
            say("no resolved reports" if args.resolved else "no open reports")
        for report in found:
            target = await get_account(conn, report.target_account_id)
            reporter = await get_account(conn, report.account_id)
            forwarded = " forwarded" if report.forwarded_at else ""
            say(
                f"#{report.id}  {report.created_at:%Y-%m-%d %H:%M}  {report.category}{forwarded}"
                f"  about {target.acct if target else '?'}"
                f" by {reporter.acct if reporter else '?'}: {report.comment!r}"
                f"  {' '.join(report.status_uris)}"
            )

    return await _run(args, work)


async def cmd_report(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config, now: datetime) -> list:
        report = await reports.report_by_id(conn, args.id)
        if report is None:
            raise ModerationError(f"no report {args.id}")
        if args.resolve:
            await reports.resolve_report(conn, report, CLI, now)
            say(f"report {args.id} resolved")
            return []
        urls = Urls(config.base_url, config.domain)
        outbound = await reports.forward_report(conn, urls, report, CLI, now)
        say(f"report {args.id} forwarded")
        return outbound

    return await _run(args, work)


async def cmd_log(args: argparse.Namespace) -> int:
    async def work(conn: AsyncConnection, config: Config, now: datetime) -> None:
        entries = await moderation.audit_log(conn, args.limit)
        if not entries:
            say("no moderation actions yet")
        for entry in entries:
            when = entry.created_at.strftime("%Y-%m-%d %H:%M:%S")
            say(
                f"{when}  {entry.actor:<20} {entry.action:<24} {entry.target}  {entry.reason or ''}"
            )

    return await _run(args, work)
