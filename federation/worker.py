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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import UnitOfWork
from federation.delivery import enqueue
from federation.dispatch import Dispatcher, Handler, InboundActivity, Reject
from federation.observe import INBOX_ITEM, Observe, ignore
from federation.tables import deliveries, inbox_items, utc

log = logging.getLogger("kith.federation.worker")

QUEUED, DONE, REJECTED, FAILED = "queued", "done", "rejected", "failed"
ATTEMPTS_MAX = 8
# While peers are posting, the worker takes at most this share of the event loop: taking an
# activity in (verify, store, 202) comes before applying it, which can wait in the durable log.
SHARE_UNDER_LOAD = 0.3
# Items are added to one transaction (one commit) until it has run this long.
TRANSACTION_BUDGET_S = 0.004
PREFETCH_AHEAD = 16


@dataclass(frozen=True)
class _Prefetched:
    handler: Handler | None
    value: Any = None
    failure: Exception | None = None


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
        observe: Observe = ignore,
    ) -> None:
        self.db = db
        self.observe = observe
        self.inbox_is_busy = inbox_is_busy
        self.dispatcher = dispatcher
        self.clock = clock
        self.new_id = new_id
        self.batch = batch
        self.lock_for = lock_for

    async def process_due(self) -> int:
        """Claim and process one batch; returns how many items were taken.

        Items are applied in arrival order, several to a transaction (each in a savepoint, so
        one that fails is undone alone) for at most TRANSACTION_BUDGET_S: a commit is a disk
        flush, and paying one per item capped how many activities a node could apply per
        second; a long transaction would hold up the inbox's own writes (its 202s)."""
        items = await self._claim()
        loop = asyncio.get_running_loop()
        claimed, waiting = list(items), []
        while claimed or waiting:
            started = loop.time()
            # Remote reads for the next few, outside the transaction.
            while claimed and len(waiting) < PREFETCH_AHEAD:
                item, attempts = claimed.pop(0)
                waiting.append((item, attempts, await self._prefetch(item)))
            applied = await self._apply(waiting)
            del waiting[:applied]
            if self.inbox_is_busy():
                took = loop.time() - started
                await asyncio.sleep(took * (1 - SHARE_UNDER_LOAD) / SHARE_UNDER_LOAD)
        return len(items)

    async def _prefetch(self, item: InboundActivity) -> _Prefetched:
        """What the item's handler reads from other servers, before any transaction."""
        handler = self.dispatcher.handler_for(item.activity_type, item.activity)
        if handler is None or handler.prefetch is None:
            return _Prefetched(handler)
        try:
            return _Prefetched(handler, await handler.prefetch(item))
        except Exception as exc:  # Reject or a failure to retry: recorded with the others
            return _Prefetched(handler, failure=exc)

    async def _apply(self, waiting: list[tuple[InboundActivity, int, _Prefetched]]) -> int:
        """Apply items from the front of `waiting` in one transaction; how many it took."""
        now = self.clock()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TRANSACTION_BUDGET_S
        taken = 0
        outcomes: list[tuple[str, str]] = []  # counted once the transaction commits
        async with self.db.transaction() as conn:
            for item, attempts, prefetched in waiting:
                if taken and loop.time() > deadline:
                    break
                taken += 1
                outcomes.append((item.activity_type, DONE))
                try:
                    async with self.db.savepoint(conn):
                        if prefetched.failure is not None:
                            raise prefetched.failure
                        if prefetched.handler is not None:
                            applied = await prefetched.handler.apply(
                                conn, item, prefetched.value, now
                            )
                            for outbound in applied:
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
                    await self._finish(conn, item.item_id, REJECTED, str(exc), now)
                    outcomes[-1] = (item.activity_type, REJECTED)
                except Exception as exc:
                    await self._retry_later(conn, item, attempts, exc, now)
                    gave_up = attempts + 1 >= ATTEMPTS_MAX
                    outcomes[-1] = (item.activity_type, FAILED if gave_up else "retry")
        for outcome in outcomes:
            self.observe(INBOX_ITEM, outcome)
        return taken

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

    async def _retry_later(
        self,
        conn: AsyncConnection,
        item: InboundActivity,
        attempts: int,
        exc: Exception,
        now: datetime,
    ) -> None:
        log.warning(
            "applying an activity failed",
            extra={"activity": item.activity_id, "attempt": attempts + 1, "error": repr(exc)},
            exc_info=(type(exc), exc, exc.__traceback__) if attempts == 0 else None,
        )
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
            _FINISH, {"item": item_id, "state": state, "finished_at": now, "last_error": error}
        )


# Once per activity applied (`kith_direct`: see server/storage/direct.py).
_FINISH = (
    update(inbox_items)
    .where(inbox_items.c.id == bindparam("item"))
    .values(locked_until=None)
    .execution_options(kith_direct=True)
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


async def release_claims(db: UnitOfWork) -> int:
    """Free the inbox items and deliveries claimed by a process that is gone. Only for a
    database that one process owns (SQLite): with several, a claim may be a live process's,
    and claims expire on their own."""
    async with db.transaction() as conn:
        freed = 0
        for table in (inbox_items, deliveries):
            result = await conn.execute(
                update(table)
                .where(table.c.state == QUEUED, table.c.locked_until.is_not(None))
                .values(locked_until=None)
            )
            freed += result.rowcount
    return freed


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
