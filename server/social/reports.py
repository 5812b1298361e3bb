"""Reports: users report accounts and statuses to the operators; peers' `Flag`s arrive as
reports too (server/social/inbound.py); operators resolve them or forward them to the
reported account's server as a `Flag` from the instance actor (Mastodon's shape: `object` =
[account, statuses…], `content` = the comment, at most 5000 characters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.dispatch import PRIORITY_INTERACTIVE, Outbound
from protocol.activities import render_activity
from server.identity.accounts import Account, get_account, instance_actor
from server.moderation import ModerationError, record
from server.social.timelines import PageRequest, newest_first, paged
from server.storage.ids import new_id
from server.storage.tables import reports
from server.urls import Urls

CATEGORIES = ("spam", "legal", "violation", "other")
COMMENT_MAX = 5000


@dataclass(frozen=True)
class Report:
    """One report, from a local user or (by `uri`, its Flag's id) a peer."""

    id: int
    account_id: int  # the reporter: a local user, or the reporting server's instance actor
    target_account_id: int
    status_uris: list[str]
    comment: str
    category: str
    uri: str | None
    created_at: datetime
    forwarded_at: datetime | None
    resolved_at: datetime | None


def _report(row: object) -> Report:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values["status_uris"] = json.loads(values["status_uris"])
    return Report(**values)


async def report_by_id(conn: AsyncConnection, report_id: int) -> Report | None:
    row = (await conn.execute(select(reports).where(reports.c.id == report_id))).first()
    return _report(row) if row else None


async def list_reports(
    conn: AsyncConnection, resolved: bool = False, page: PageRequest | None = None
) -> list[Report]:
    """Open reports (or, with resolved=True, the resolved ones): all, oldest first, or one
    page of them, newest first."""
    done = reports.c.resolved_at.is_not(None) if resolved else reports.c.resolved_at.is_(None)
    query = select(reports).where(done)
    if page is None:
        rows = (await conn.execute(query.order_by(reports.c.id))).all()
    else:
        rows = newest_first((await conn.execute(paged(query, reports.c.id, page))).all(), page)
    return [_report(row) for row in rows]


async def create_report(
    conn: AsyncConnection,
    urls: Urls,
    reporter: Account,
    target: Account,
    status_uris: list[str],
    comment: str,
    category: str,
    forward: bool,
    now: datetime,
) -> tuple[Report, list[Outbound]]:
    """A user's report; with `forward`, a remote target's server hears of it at once (as
    Mastodon does), anonymously: the Flag comes from the instance actor."""
    if category not in CATEGORIES:
        raise ModerationError(f"category is one of {', '.join(CATEGORIES)}")
    if target.id == reporter.id or target.is_instance_actor:
        raise ModerationError("that account cannot be reported")
    report_id = new_id(now)
    await conn.execute(
        reports.insert().values(
            id=report_id,
            account_id=reporter.id,
            target_account_id=target.id,
            status_uris=json.dumps(status_uris),
            comment=comment[:COMMENT_MAX],
            category=category,
            created_at=now,
        )
    )
    report = await report_by_id(conn, report_id)
    assert report is not None
    if not forward or target.is_local:
        return report, []
    outbound = await forward_report(conn, urls, report, f"user:{reporter.username}", now)
    return (await report_by_id(conn, report_id)) or report, outbound


async def forward_report(
    conn: AsyncConnection, urls: Urls, report: Report, who: str, now: datetime
) -> list[Outbound]:
    """Send the report to the reported account's server as a Flag from the instance actor."""
    target = await get_account(conn, report.target_account_id)
    if target is None or target.is_local or not target.uri:
        raise ModerationError("only a report about a remote account can be forwarded")
    actor = await instance_actor(conn)
    assert actor is not None, "the instance actor is created at start-up"
    signer = urls.actor(actor)
    flag = render_activity(
        "Flag",
        urls.activity(new_id(now)),
        signer,
        [target.uri, *report.status_uris],
        content=report.comment,
    )
    await conn.execute(update(reports).where(reports.c.id == report.id).values(forwarded_at=now))
    await record(conn, who, "report_forward", f"report:{report.id}", None, now)
    return [Outbound(flag, signer, (target.uri,), PRIORITY_INTERACTIVE)]


async def resolve_report(
    conn: AsyncConnection, report: Report, who: str, now: datetime, reason: str | None = None
) -> None:
    """Mark a report resolved (recorded in the audit log)."""
    await conn.execute(update(reports).where(reports.c.id == report.id).values(resolved_at=now))
    await record(conn, who, "report_resolve", f"report:{report.id}", reason, now)
