"""Moderation: domain blocks, account suspension and silencing, and the audit log.

Severities are Mastodon's. A **silenced** domain or account is kept off public timelines (its
posts reach only its followers) and its follows need approval. A **suspended** domain is
refused everything: the inbox drops its activities, nothing is fetched from it or delivered
to it, its accounts' posts and follows (both ways) are purged here and its accounts marked
suspended; payments with it stop (its ledger account and statements stay). `reject_media`
keeps its pictures from being copied here (they stay links). A suspended local account
cannot sign in, use its tokens, pay or be paid; a suspended remote one is purged and its
activities dropped.

Every action is recorded in `moderation_log` in the same transaction (who: "cli" or
"admin:<username>"). Functions take `(conn, …, now)` and return deliveries; callers commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.dispatch import Dispatcher, InboundActivity, Outbound
from federation.domains import DomainRules, matches
from protocol.as2 import id_of
from server.identity.accounts import Account
from server.social.profiles import delete_account, update_profile
from server.storage.ids import new_id
from server.storage.tables import (
    accounts,
    domain_blocks,
    follows,
    home_feed,
    moderation_log,
    statuses,
)
from server.urls import Urls

log = logging.getLogger("kith.moderation")
SILENCE, SUSPEND, NOOP = "silence", "suspend", "noop"
SEVERITIES = (SILENCE, SUSPEND, NOOP)


class ModerationError(ValueError):
    """An action that cannot be taken, with the reason."""


@dataclass(frozen=True)
class DomainBlock:
    """One blocked domain (and its subdomains)."""

    domain: str
    severity: str
    reject_media: bool
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class LogEntry:
    """One recorded moderation action."""

    id: int
    actor: str
    action: str
    target: str
    reason: str | None
    created_at: datetime


def normalize_domain(text: str) -> str:
    """A domain as blocks store it: lower case, no scheme, path or trailing dot."""
    domain = text.strip().lower().removeprefix("https://").removeprefix("http://")
    domain = domain.split("/", 1)[0].rstrip(".")
    if not domain or " " in domain or "@" in domain:
        raise ModerationError(f"{text!r} is not a domain name")
    return domain


async def record(
    conn: AsyncConnection, who: str, action: str, target: str, reason: str | None, now: datetime
) -> None:
    """Write one audit-log entry (in the caller's transaction)."""
    await conn.execute(
        moderation_log.insert().values(
            id=new_id(now), actor=who, action=action, target=target, reason=reason, created_at=now
        )
    )


async def audit_log(conn: AsyncConnection, limit: int = 100) -> list[LogEntry]:
    """The newest recorded actions first."""
    rows = await conn.execute(
        select(moderation_log).order_by(moderation_log.c.id.desc()).limit(limit)
    )
    return [LogEntry(**row._mapping) for row in rows]


# --- domains -------------------------------------------------------------------------------


async def domain_block_list(conn: AsyncConnection) -> list[DomainBlock]:
    """Every domain block, by domain."""
    rows = await conn.execute(select(domain_blocks).order_by(domain_blocks.c.domain))
    return [DomainBlock(r.domain, r.severity, r.reject_media, r.reason, r.created_at) for r in rows]


async def block_domain(
    conn: AsyncConnection,
    domain: str,
    severity: str,
    who: str,
    now: datetime,
    reject_media: bool = False,
    reason: str | None = None,
) -> DomainBlock:
    """Block (or change the block of) a domain; a suspension purges its accounts' content."""
    if severity not in SEVERITIES:
        raise ModerationError(f"the severity is one of {', '.join(SEVERITIES)}")
    domain = normalize_domain(domain)
    values = {"severity": severity, "reject_media": reject_media, "reason": reason}
    before = await conn.scalar(
        select(domain_blocks.c.severity).where(domain_blocks.c.domain == domain)
    )
    if before == SUSPEND and severity != SUSPEND:  # eased: its accounts may act again
        await conn.execute(update(accounts).where(_on_domain(domain)).values(suspended_at=None))
    changed = await conn.execute(
        update(domain_blocks).where(domain_blocks.c.domain == domain).values(**values)
    )
    if not changed.rowcount:
        await conn.execute(
            domain_blocks.insert().values(id=new_id(now), domain=domain, created_at=now, **values)
        )
    if severity == SUSPEND:
        await _suspend_remote(conn, _on_domain(domain), now)
    action = f"domain_block:{severity}" + (":reject_media" if reject_media else "")
    await record(conn, who, action, domain, reason, now)
    return DomainBlock(domain, severity, reject_media, reason, now)


async def unblock_domain(conn: AsyncConnection, domain: str, who: str, now: datetime) -> bool:
    """Lift a domain block (its purged content does not come back; its accounts are
    unsuspended so new activities are taken again)."""
    domain = normalize_domain(domain)
    found = await conn.execute(delete(domain_blocks).where(domain_blocks.c.domain == domain))
    if not found.rowcount:
        return False
    await conn.execute(
        update(accounts).where(_on_domain(domain)).values(suspended_at=None, silenced_at=None)
    )
    await record(conn, who, "domain_unblock", domain, None, now)
    return True


def _on_domain(domain: str) -> ColumnElement[bool]:
    """Remote accounts on a domain (with any port) or its subdomains."""
    return or_(
        accounts.c.domain == domain,
        accounts.c.domain.like(f"{domain}:%"),
        accounts.c.domain.like(f"%.{domain}"),
        accounts.c.domain.like(f"%.{domain}:%"),
    )


def not_limited_for(viewer: Account | None) -> ColumnElement[bool]:
    """For public timelines: the author (joined as `accounts`) is neither silenced nor on a
    silenced domain, or the viewer follows them."""
    silenced_domain = exists().where(
        domain_blocks.c.severity == SILENCE,
        or_(
            accounts.c.domain == domain_blocks.c.domain,
            accounts.c.domain.like(domain_blocks.c.domain + ":%"),
            accounts.c.domain.like("%." + domain_blocks.c.domain),
        ),
    )
    limited = or_(accounts.c.silenced_at.is_not(None), silenced_domain)
    if viewer is None:
        return ~limited
    follows_author = exists().where(
        follows.c.account_id == viewer.id,
        follows.c.target_account_id == accounts.c.id,
        follows.c.state == "accepted",
    )
    return or_(~limited, follows_author)


async def is_limited(conn: AsyncConnection, account: Account) -> bool:
    """Whether an account is silenced, itself or by its domain (its follows need approval)."""
    if account.silenced_at is not None:
        return True
    if account.is_local:
        return False
    silenced = await conn.execute(
        select(domain_blocks.c.domain).where(domain_blocks.c.severity == SILENCE)
    )
    return matches(account.domain, frozenset(silenced.scalars()))


async def refused_domains(conn: AsyncConnection) -> tuple[set[str], set[str]]:
    """The suspended domains (from the table) and the actor ids of suspended remote accounts:
    what the inbox, fetcher and delivery refuse."""
    domains = await conn.execute(
        select(domain_blocks.c.domain).where(domain_blocks.c.severity == SUSPEND)
    )
    actors = await conn.execute(
        select(accounts.c.uri).where(accounts.c.domain != "", accounts.c.suspended_at.is_not(None))
    )
    return set(domains.scalars()), {uri for uri in actors.scalars() if uri}


async def is_domain_suspended(conn: AsyncConnection, host: str) -> bool:
    """Whether host[:port] is on a suspended domain (payments with it stop)."""
    suspended, _ = await refused_domains(conn)
    return matches(host, frozenset(suspended))


async def rejects_media(conn: AsyncConnection, *hosts: str) -> bool:
    """Whether any of these hosts is on a domain blocked with `reject_media` (its pictures
    are not copied here)."""
    rejected = await conn.execute(
        select(domain_blocks.c.domain).where(domain_blocks.c.reject_media.is_(True))
    )
    domains = frozenset(rejected.scalars())
    return any(matches(host, domains) for host in hosts)


# Social activity types: one queued in the inbox log before its sender was suspended is
# dropped when its turn comes (payment answers stay routed to payments: settling what was in
# flight before a suspension is wanted).
GUARDED_TYPES = (
    "Follow", "Accept", "Reject", "Undo", "Create", "Update", "Delete", "Like", "Announce",
    "Block", "Flag", "Move",
)  # fmt: skip


def guard_inbox(dispatcher: Dispatcher, rules: DomainRules) -> None:
    """Route activities from refused actors and domains to nothing, ahead of the handlers."""

    def refused(activity: dict[str, Any]) -> bool:
        return rules.refuses(id_of(activity.get("actor")) or "")

    async def drop(
        conn: AsyncConnection, item: InboundActivity, prefetched: Any, now: datetime
    ) -> list[Outbound]:
        log.info("dropped an activity from a suspended actor", extra={"id": item.activity_id})
        return []

    for kind in GUARDED_TYPES:
        dispatcher.route(kind, refused, drop)


# --- accounts ------------------------------------------------------------------------------


async def _suspend_remote(conn: AsyncConnection, which: ColumnElement[bool], now: datetime) -> int:
    """Mark remote accounts suspended and purge their posts and follows (both ways)."""
    ids = list(
        (await conn.execute(select(accounts.c.id).where(which, accounts.c.domain != ""))).scalars()
    )
    if not ids:
        return 0
    await conn.execute(delete(statuses).where(statuses.c.account_id.in_(ids)))
    await conn.execute(
        delete(follows).where(
            or_(follows.c.account_id.in_(ids), follows.c.target_account_id.in_(ids))
        )
    )
    await conn.execute(
        update(accounts)
        .where(accounts.c.id.in_(ids), accounts.c.suspended_at.is_(None))
        .values(suspended_at=now)
    )
    return len(ids)


async def suspend_account(
    conn: AsyncConnection,
    account: Account,
    who: str,
    now: datetime,
    reason: str | None = None,
    urls: Urls | None = None,
) -> list[Outbound]:
    """Suspend an account: a local one is locked out, its posts are served to nobody (they
    stay, for an unsuspend) and, given `urls`, its followers' servers get its minimal actor
    document (Update); a remote one is purged and its activities dropped from now on."""
    if account.is_instance_actor:
        raise ModerationError("the instance actor cannot be suspended")
    outbound: list[Outbound] = []
    if account.is_local:
        await conn.execute(
            update(accounts).where(accounts.c.id == account.id).values(suspended_at=now)
        )
        # Out of everyone's home feed (as Mastodon; an unsuspend does not put them back).
        await conn.execute(
            delete(home_feed).where(
                home_feed.c.status_id.in_(
                    select(statuses.c.id).where(statuses.c.account_id == account.id)
                )
            )
        )
        if urls is not None:
            outbound = (await update_profile(conn, urls, account, now))[1]
    else:
        await _suspend_remote(conn, accounts.c.id == account.id, now)
    await record(conn, who, "suspend", _target(account), reason, now)
    return outbound


async def unsuspend_account(
    conn: AsyncConnection,
    account: Account,
    who: str,
    now: datetime,
    reason: str | None = None,
    urls: Urls | None = None,
) -> list[Outbound]:
    """Lift a suspension (purged remote content does not come back); a local account's
    full document goes to its followers' servers again, given `urls`."""
    await conn.execute(
        update(accounts).where(accounts.c.id == account.id).values(suspended_at=None)
    )
    await record(conn, who, "unsuspend", _target(account), reason, now)
    if account.is_local and urls is not None:
        return (await update_profile(conn, urls, account, now))[1]
    return []


async def silence_account(
    conn: AsyncConnection,
    account: Account,
    who: str,
    now: datetime,
    reason: str | None = None,
    silenced: bool = True,
) -> None:
    """Silence (or, with silenced=False, unsilence) an account."""
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account.id)
        .values(silenced_at=now if silenced else None)
    )
    action = "silence" if silenced else "unsilence"
    await record(conn, who, action, _target(account), reason, now)


async def delete_local_account(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    who: str,
    now: datetime,
    reason: str | None = None,
) -> list[Outbound]:
    """Delete a local account as an operator: posts and follows go, peers get Delete(Person)."""
    if not account.is_local or account.is_instance_actor or account.is_deleted:
        raise ModerationError("only a live local user account can be deleted")
    outbound = await delete_account(conn, urls, account, now)
    await record(conn, who, "delete", _target(account), reason, now)
    return outbound


def _target(account: Account) -> str:
    return account.acct if account.is_local else account.uri or account.acct
