"""The inbox worker: takes verified activities from the log and applies them through handlers.

Each activity is applied in one transaction together with the deliveries it causes and the
mark that it is done (a transactional outbox): a crash replays it, never half-applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import UnitOfWork
from federation.delivery import enqueue
from federation.dispatch import Dispatcher, InboundActivity, Reject
from federation.tables import deliveries, inbox_items, utc

log = logging.getLogger("kith.federation.worker")

QUEUED, DONE, REJECTED, FAILED = "queued", "done", "rejected", "failed"
ATTEMPTS_MAX = 8
# While peers are posting, the worker takes at most this share of the event loop: taking an
# activity in (verify, store, 202) comes before applying it, which can wait in the durable log.
SHARE_UNDER_LOAD = 0.3


def retry_delay(attempts: int) -> timedelta:
    """Back off 2, 4, 8 … seconds, at most an hour, for activities that failed to apply."""
    return timedelta(seconds=min(2**attempts, 3600))


class InboxWorker:
    """Processes due inbox items in arrival order."""

    def __init__(
        self,
        db: UnitOfWork,
        dispatcher: Dispatcher,
        clock: Callable[[], datetime],
        new_id: Callable[[datetime], int],
        batch: int = 64,
        lock_for: timedelta = timedelta(minutes=2),
        inbox_is_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.db = db
        self.inbox_is_busy = inbox_is_busy
        self.dispatcher = dispatcher
        self.clock = clock
        self.new_id = new_id
        self.batch = batch
        self.lock_for = lock_for

    async def process_due(self) -> int:
        """Claim and process one batch; returns how many items were taken."""
        items = await self._claim()
        loop = asyncio.get_running_loop()
        for item, attempts in items:
            started = loop.time()
            await self._process(item, attempts)
            if self.inbox_is_busy():
                took = loop.time() - started
                await asyncio.sleep(took * (1 - SHARE_UNDER_LOAD) / SHARE_UNDER_LOAD)
        return len(items)

    async def _claim(self) -> list[tuple[InboundActivity, int]]:
        now = self.clock()
        async with self.db.transaction() as conn:
            rows = (
                await conn.execute(
                    select(inbox_items)
                    .where(
                        inbox_items.c.state == QUEUED,
                        inbox_items.c.next_attempt_at <= now,
                        or_(
                            inbox_items.c.locked_until.is_(None),
                            inbox_items.c.locked_until < now,
                        ),
                    )
                    .order_by(inbox_items.c.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await conn.execute(
                    update(inbox_items)
                    .where(inbox_items.c.id.in_([row.id for row in rows]))
                    .values(locked_until=now + self.lock_for)
                )
        return [
            (
                InboundActivity(
                    item_id=row.id,
                    activity_id=row.activity_id,
                    activity_type=row.activity_type,
                    actor_uri=row.actor_uri,
                    activity=json.loads(row.body),
                    received_at=utc(row.received_at),  # type: ignore[arg-type]
                ),
                row.attempts,
            )
            for row in rows
        ]

    async def _process(self, item: InboundActivity, attempts: int) -> None:
        handler = self.dispatcher.handler_for(item.activity_type, item.activity)
        try:
            prefetched = None
            if handler is not None and handler.prefetch is not None:
                prefetched = await handler.prefetch(item)
            now = self.clock()
            async with self.db.transaction() as conn:
                if handler is not None:
                    for outbound in await handler.apply(conn, item, prefetched, now):
                        await enqueue(conn, outbound, self.new_id, now)
                await self._finish(conn, item.item_id, DONE, None, now)
        except Reject as exc:
            log.info(
                "activity rejected",
                extra={
                    "activity": item.activity_id,
                    "type": item.activity_type,
                    "reason": str(exc),
                },
            )
            async with self.db.transaction() as conn:
                await self._finish(conn, item.item_id, REJECTED, str(exc), self.clock())
        except Exception as exc:
            await self._retry_later(item, attempts, exc)

    async def _retry_later(self, item: InboundActivity, attempts: int, exc: Exception) -> None:
        log.warning(
            "applying an activity failed",
            extra={"activity": item.activity_id, "attempt": attempts + 1, "error": repr(exc)},
            exc_info=attempts == 0,
        )
        now = self.clock()
        async with self.db.transaction() as conn:
            if attempts + 1 >= ATTEMPTS_MAX:
                await self._finish(conn, item.item_id, FAILED, repr(exc), now)
                return
            await conn.execute(
                update(inbox_items)
                .where(inbox_items.c.id == item.item_id)
                .values(
                    attempts=attempts + 1,
                    next_attempt_at=now + retry_delay(attempts + 1),
                    locked_until=None,
                    last_error=repr(exc)[:2000],
                )
            )

    @staticmethod
    async def _finish(
        conn: AsyncConnection, item_id: int, state: str, error: str | None, now: datetime
    ) -> None:
        await conn.execute(
            update(inbox_items)
            .where(inbox_items.c.id == item_id)
            .values(state=state, finished_at=now, locked_until=None, last_error=error)
        )


async def run_loop(
    name: str, step: Callable[[], object], wake: asyncio.Event, idle_s: float = 1.0
) -> None:
    """Call `step` until it finds nothing, then sleep until woken or `idle_s` passes."""
    task = asyncio.current_task()
    while True:
        try:
            did = await step()  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker step failed", extra={"worker": name})
            did = 0
        # Library code under `step` (the database driver) may absorb a CancelledError; the
        # request to stop is still recorded on the task, so honour it before going on.
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        if did:
            continue
        wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle_s):
                await wake.wait()


async def sweep_finished(db: UnitOfWork, before: datetime) -> tuple[int, int]:
    """Delete inbox items and deliveries that finished before `before`; returns the counts.

    Replays of older activities cannot pass the signature time window (≈ 13 hours at most),
    so forgetting their ids after the retention period reopens no replay.
    """
    async with db.transaction() as conn:
        inbox = await conn.execute(
            delete(inbox_items).where(
                inbox_items.c.state != QUEUED, inbox_items.c.finished_at < before
            )
        )
        sent = await conn.execute(
            delete(deliveries).where(
                deliveries.c.state != "queued", deliveries.c.finished_at < before
            )
        )
    return inbox.rowcount, sent.rowcount
