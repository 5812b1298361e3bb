"""Account counters (statuses but direct messages, followers, following, last post) kept by
database triggers stay equal to a recount after any sequence of writes, on SQLite and
PostgreSQL; an upgrade fills them from the rows already there."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config import load_config
from server.storage.engine import Database, create_database
from server.storage.schema import upgrade
from server.storage.tables import account_stats, accounts, follows, statuses
from tests.databases import DatabaseFactory

NOW = datetime(2026, 12, 5, tzinfo=UTC)
ACCOUNTS = 6


async def _database(databases: DatabaseFactory, tmp_path, target: str = "head") -> Database:
    config = load_config(
        None, environ={}, overrides={"database.url": await databases.new()}, cwd=tmp_path
    )
    db = create_database(config.database.url, config.database)
    await upgrade(db, target=target)
    return db


async def _add_accounts(conn: AsyncConnection) -> None:
    for n in range(1, ACCOUNTS + 1):
        await conn.execute(
            insert(accounts).values(
                id=n,
                username=f"user{n}",
                username_key=f"user{n}",
                domain="",
                actor_type="Person",
                is_instance_actor=False,
                display_name="",
                note="",
                is_locked=False,
                is_discoverable=True,
                is_indexable=False,
                is_admin=False,
                created_at=NOW,
            )
        )


async def _recount(conn: AsyncConnection) -> dict[int, tuple[int, int, int, int | None]]:
    """What the counters must say, counted from the rows (direct messages do not count, as on
    Mastodon: a counter that moves would tell that one was sent)."""
    counts = {n: [0, 0, 0, None] for n in range(1, ACCOUNTS + 1)}
    shown = select(statuses.c.account_id, statuses.c.id).where(statuses.c.visibility != "direct")
    for account_id, status_id in await conn.execute(shown):
        counts[account_id][0] += 1
        newest = counts[account_id][3]
        counts[account_id][3] = status_id if newest is None else max(newest, status_id)
    rows = await conn.execute(
        select(follows.c.account_id, follows.c.target_account_id).where(
            follows.c.state == "accepted"
        )
    )
    for follower, followed in rows:
        counts[followed][1] += 1
        counts[follower][2] += 1
    return {n: (c[0], c[1], c[2], c[3]) for n, c in counts.items()}


async def _counters(conn: AsyncConnection) -> dict[int, tuple[int, int, int, int | None]]:
    found = {n: (0, 0, 0, None) for n in range(1, ACCOUNTS + 1)}
    for row in await conn.execute(select(account_stats)):
        if row.account_id in found:
            found[row.account_id] = (
                row.statuses_count,
                row.followers_count,
                row.following_count,
                row.last_status_id,
            )
    return found


async def _random_write(conn: AsyncConnection, rng: random.Random, serial: int) -> None:
    """One of the writes the node makes: post, delete, follow, request, accept, unfollow."""
    author = rng.randint(1, ACCOUNTS)
    other = rng.choice([n for n in range(1, ACCOUNTS + 1) if n != author])
    choice = rng.random()
    if choice < 0.35:
        await conn.execute(
            insert(statuses).values(
                id=serial,
                account_id=author,
                uri=f"https://kith.example/statuses/{serial}",
                content="",
                text="",
                visibility=rng.choice(["public", "unlisted", "private", "direct"]),
                spoiler_text="",
                sensitive=False,
                created_at=NOW,
            )
        )
    elif choice < 0.5:
        own = (
            await conn.execute(select(statuses.c.id).where(statuses.c.account_id == author))
        ).scalars()
        ids = own.all()
        if ids:
            await conn.execute(delete(statuses).where(statuses.c.id == rng.choice(ids)))
    elif choice < 0.75:
        exists = (
            await conn.execute(
                select(follows.c.id).where(
                    follows.c.account_id == author, follows.c.target_account_id == other
                )
            )
        ).first()
        if exists is None:
            await conn.execute(
                insert(follows).values(
                    id=serial,
                    account_id=author,
                    target_account_id=other,
                    state=rng.choice(["accepted", "requested"]),
                    show_reblogs=True,
                    notify=False,
                    created_at=NOW,
                )
            )
    elif choice < 0.85:
        await conn.execute(
            update(follows)
            .where(follows.c.target_account_id == author, follows.c.state == "requested")
            .values(state="accepted")
        )
    elif choice < 0.95:
        await conn.execute(
            delete(follows).where(
                follows.c.account_id == author, follows.c.target_account_id == other
            )
        )
    else:
        # A follow moved to another account (Move), whatever its state.
        await conn.execute(
            update(follows)
            .where(follows.c.target_account_id == author, follows.c.account_id != other)
            .values(target_account_id=other)
            .execution_options(synchronize_session=False)
        )


async def test_counters_equal_a_recount_after_any_sequence_of_writes(
    databases: DatabaseFactory, tmp_path
) -> None:
    db = await _database(databases, tmp_path)
    rng = random.Random(20261205)
    try:
        async with db.transaction() as conn:
            await _add_accounts(conn)
        for batch in range(20):
            async with db.transaction() as conn:
                for step in range(15):
                    # A moved follow may meet an existing pair: that write is rolled back alone.
                    with contextlib.suppress(IntegrityError):
                        async with conn.begin_nested():
                            await _random_write(conn, rng, 1000 + batch * 100 + step)
            async with db.read() as conn:
                assert await _counters(conn) == await _recount(conn), f"after batch {batch}"
    finally:
        await db.dispose()


async def test_a_deleted_account_takes_its_posts_and_follows_out_of_the_others_counts(
    databases: DatabaseFactory, tmp_path
) -> None:
    db = await _database(databases, tmp_path)
    try:
        async with db.transaction() as conn:
            await _add_accounts(conn)
            for follower in (2, 3):
                await conn.execute(
                    insert(follows).values(
                        id=100 + follower,
                        account_id=follower,
                        target_account_id=1,
                        state="accepted",
                        show_reblogs=True,
                        notify=False,
                        created_at=NOW,
                    )
                )
            await conn.execute(
                insert(follows).values(
                    id=200,
                    account_id=1,
                    target_account_id=4,
                    state="accepted",
                    show_reblogs=True,
                    notify=False,
                    created_at=NOW,
                )
            )
        async with db.transaction() as conn:
            await conn.execute(delete(accounts).where(accounts.c.id == 1))  # cascades
        async with db.read() as conn:
            counters = await _counters(conn)
        assert counters[2][2] == counters[3][2] == 0  # no longer following anyone
        assert counters[4][1] == 0  # lost its follower
    finally:
        await db.dispose()


async def test_the_upgrade_fills_the_counters_from_existing_rows(
    databases: DatabaseFactory, tmp_path
) -> None:
    db = await _database(databases, tmp_path, target="0005")
    try:
        async with db.transaction() as conn:
            await _add_accounts(conn)
            for serial in (11, 12, 13):
                await conn.execute(
                    text(
                        "INSERT INTO statuses (id, account_id, uri, content, text, visibility,"
                        " spoiler_text, sensitive, created_at) VALUES (:id, 2, :uri, '', '',"
                        " 'public', '', false, :now)"
                    ),
                    {"id": serial, "uri": f"https://kith.example/s/{serial}", "now": NOW},
                )
            await conn.execute(
                text(
                    "INSERT INTO follows (id, account_id, target_account_id, state, show_reblogs,"
                    " notify, created_at) VALUES (1, 3, 2, 'accepted', true, false, :now),"
                    " (2, 4, 2, 'requested', true, false, :now)"
                ),
                {"now": NOW},
            )
        await upgrade(db)
        async with db.read() as conn:
            counters = await _counters(conn)
            assert counters == await _recount(conn)
        assert counters[2] == (3, 1, 0, 13)
        assert counters[3] == (0, 0, 1, None)
    finally:
        await db.dispose()
