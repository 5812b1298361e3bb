"""The inbox worker against a real database: it applies what the inbox log holds, and while
peers are posting it leaves most of the event loop to taking activities in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.dispatch import Dispatcher, InboundActivity, Outbound
from federation.inbox import InboxLog
from federation.tables import inbox_items
from federation.worker import SHARE_UNDER_LOAD, InboxWorker
from server.config import load_config
from server.node import open_database
from server.storage.engine import Database
from server.storage.ids import new_id
from tests.databases import DatabaseFactory
from tests.harness import FakeClock

APPLY_S = 0.02  # each activity's apply takes this long (wall time)
ITEMS = 4


@pytest.fixture
async def db(databases: DatabaseFactory, tmp_path) -> AsyncIterator[Database]:
    config = load_config(
        None, environ={}, overrides={"database.url": await databases.new()}, cwd=tmp_path
    )
    database = await open_database(config, initialize_empty=True)
    yield database
    await database.dispose()


async def _queue_likes(db: Database, clock: FakeClock) -> None:
    log = InboxLog(db)
    for serial in range(ITEMS):
        activity = {"id": f"https://peer.example/likes/{serial}", "type": "Like"}
        await log.append(
            {
                "id": new_id(clock()),
                "activity_id": activity["id"],
                "activity_type": "Like",
                "actor_uri": "https://peer.example/users/bob",
                "signer_key_id": "https://peer.example/users/bob#main-key",
                "body": json.dumps(activity),
                "state": "queued",
                "attempts": 0,
                "received_at": clock(),
                "next_attempt_at": clock(),
            }
        )


def _slow_dispatcher(applied: list[str]) -> Dispatcher:
    async def apply(
        conn: AsyncConnection, item: InboundActivity, _prefetched: object, _now: datetime
    ) -> list[Outbound]:
        await asyncio.sleep(APPLY_S)
        applied.append(item.activity_id)
        return []

    dispatcher = Dispatcher()
    dispatcher.register("Like", apply)
    return dispatcher


async def _process_all(db: Database, busy: bool) -> tuple[float, list[str]]:
    clock = FakeClock()
    await _queue_likes(db, clock)
    applied: list[str] = []
    worker = InboxWorker(db, _slow_dispatcher(applied), clock, new_id, inbox_is_busy=lambda: busy)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await worker.process_due() == ITEMS
    took = loop.time() - started
    async with db.read() as conn:
        states = (await conn.execute(select(inbox_items.c.state))).scalars().all()
    assert states == ["done"] * ITEMS
    return took, applied


async def test_worker_applies_every_item_in_arrival_order(db: Database) -> None:
    _, applied = await _process_all(db, busy=False)
    assert applied == [f"https://peer.example/likes/{serial}" for serial in range(ITEMS)]


async def test_worker_takes_at_most_its_share_of_the_loop_while_peers_post(
    db: Database,
) -> None:
    took, applied = await _process_all(db, busy=True)
    assert len(applied) == ITEMS
    # Each apply is followed by a pause long enough that applying is at most the share.
    assert took >= ITEMS * APPLY_S / SHARE_UNDER_LOAD * 0.95
