"""What is waiting in federation's queues, and which hosts fail: for `/metrics` and `kith status`.

Every query reads the queued rows through the queues' `(state, …)` indexes, never the finished
ones (kept for `federation.retention_days`), so a scrape costs in proportion to the backlog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.tables import deliveries, hosts, inbox_items, utc

QUEUED, FAILED = "queued", "failed"


@dataclass(frozen=True)
class QueueDepths:
    inbox_queued: int
    inbox_failed: int  # given up on within the retention period
    inbox_oldest_due_at: datetime | None  # the longest-waiting queued item's due time
    deliveries_queued: int  # due now or waiting for a retry
    deliveries_due: int
    deliveries_oldest_due_at: datetime | None  # the longest-waiting due delivery's due time
    hosts_failing: int  # failed on some day since their last success
    hosts_unavailable: int  # failed on seven distinct days: not delivered to


@dataclass(frozen=True)
class FailingHost:
    host: str
    is_unavailable: bool
    failure_days: int
    first_failure_at: datetime | None
    last_failure_at: datetime | None
    last_success_at: datetime | None


async def queue_depths(conn: AsyncConnection, now: datetime) -> QueueDepths:
    """How much inbound and outbound work waits, and since when."""
    inbox = {
        row.state: row
        for row in await conn.execute(
            select(
                inbox_items.c.state,
                func.count().label("items"),
                func.min(inbox_items.c.next_attempt_at).label("oldest"),
            )
            .where(inbox_items.c.state.in_((QUEUED, FAILED)))
            .group_by(inbox_items.c.state)
        )
    }
    is_due = deliveries.c.next_attempt_at <= now
    sent = (
        await conn.execute(
            select(
                func.count().label("queued"),
                func.coalesce(func.sum(case((is_due, 1), else_=0)), 0).label("due"),
                func.min(case((is_due, deliveries.c.next_attempt_at))).label("oldest"),
            ).where(deliveries.c.state == QUEUED)
        )
    ).one()
    health = (
        await conn.execute(
            select(
                func.coalesce(func.sum(case((hosts.c.failure_days > 0, 1), else_=0)), 0),
                func.coalesce(func.sum(case((hosts.c.is_unavailable, 1), else_=0)), 0),
            )
        )
    ).one()
    queued, failed = inbox.get(QUEUED), inbox.get(FAILED)
    return QueueDepths(
        inbox_queued=queued.items if queued else 0,
        inbox_failed=failed.items if failed else 0,
        inbox_oldest_due_at=utc(queued.oldest) if queued else None,
        deliveries_queued=sent.queued,
        deliveries_due=int(sent.due),
        deliveries_oldest_due_at=utc(sent.oldest),
        hosts_failing=int(health[0]),
        hosts_unavailable=int(health[1]),
    )


async def failing_hosts(conn: AsyncConnection, limit: int = 100) -> list[FailingHost]:
    """Hosts that failed since their last success or are marked unavailable, latest first."""
    rows = await conn.execute(
        select(hosts)
        .where(or_(hosts.c.failure_days > 0, hosts.c.is_unavailable))
        .order_by(hosts.c.last_failure_at.desc().nulls_last(), hosts.c.host)
        .limit(limit)
    )
    return [
        FailingHost(
            host=row.host,
            is_unavailable=row.is_unavailable,
            failure_days=row.failure_days,
            first_failure_at=utc(row.first_failure_at),
            last_failure_at=utc(row.last_failure_at),
            last_success_at=utc(row.last_success_at),
        )
        for row in rows
    ]
