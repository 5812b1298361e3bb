"""Durable delivery: a restart or an outage delays deliveries but never loses or repeats them."""

from __future__ import annotations

from sqlalchemy import func, select, update

from federation.tables import deliveries, hosts, inbox_items
from tests.federation.social import follow, follow_state, known, post, stored
from tests.harness import Node, NodeFactory, eventually

ACCEPTED = "accepted"


async def _alice_follows_bob(a: Node, b: Node) -> None:
    await a.create_user("alice")
    await b.create_user("bob")
    bob_on_a = await known(a, b, "bob")
    await follow(a, "alice", bob_on_a)
    alice = await a.account("alice")
    await eventually(lambda: follow_state(a, alice, bob_on_a), ACCEPTED.__eq__)


async def _deliveries(node: Node) -> list[tuple[str, int]]:
    async with node.db.read() as conn:
        rows = await conn.execute(
            select(deliveries.c.state, deliveries.c.attempts).order_by(deliveries.c.id)
        )
        return [(row.state, row.attempts) for row in rows]


async def _inbox_rows(node: Node, activity_id: str) -> int:
    async with node.db.read() as conn:
        return (
            await conn.execute(
                select(func.count())
                .select_from(inbox_items)
                .where(inbox_items.c.activity_id == activity_id)
            )
        ).scalar_one()


async def test_a_receiver_that_was_down_gets_the_post_once_when_it_is_back(
    nodes: NodeFactory,
) -> None:
    a, b = await nodes.start(), await nodes.start()
    await _alice_follows_bob(a, b)
    await nodes.stop(a)
    status = await post(b, "bob", "while you were away")

    async def retrying() -> list[tuple[str, int]]:
        return [row for row in await _deliveries(b) if row == ("queued", 1)]

    await eventually(retrying)
    await nodes.restart(a)
    b.clock.advance(minutes=5)  # past the first backoff (≤ 24 s)
    b.federation.delivery_wake.set()
    await eventually(lambda: stored(a, status.uri))
    assert await _inbox_rows(a, f"{status.uri}/activity") == 1
    assert ("delivered", 2) in await _deliveries(b)


async def test_deliveries_queued_before_a_restart_are_sent_once_after_it(
    nodes: NodeFactory,
) -> None:
    a, b = await nodes.start(), await nodes.start()
    await _alice_follows_bob(a, b)
    await nodes.stop(a)
    posts = [await post(b, "bob", f"post {n}") for n in range(5)]

    async def all_retrying() -> bool:
        rows = await _deliveries(b)
        return sum(1 for state, attempts in rows if state == "queued" and attempts >= 1) == 5

    await eventually(all_retrying)
    await nodes.stop(b)  # the sender goes down with its queue full
    await nodes.restart(a)
    await nodes.restart(b)
    b.clock.advance(minutes=5)
    b.federation.delivery_wake.set()
    for status in posts:
        await eventually(lambda status=status: stored(a, status.uri))
        assert await _inbox_rows(a, f"{status.uri}/activity") == 1
    await eventually(
        lambda: _deliveries(b), lambda rows: all(state == "delivered" for state, _ in rows)
    )


async def test_a_host_marked_unavailable_is_revived_by_a_signed_request_from_it(
    nodes: NodeFactory,
) -> None:
    a, b = await nodes.start(), await nodes.start()
    await _alice_follows_bob(a, b)
    async with b.db.transaction() as conn:
        await conn.execute(
            update(hosts)
            .where(hosts.c.host == a.domain)
            .values(is_unavailable=True, failure_days=7)
        )

    async def available() -> bool:
        async with b.db.read() as conn:
            row = (await conn.execute(select(hosts).where(hosts.c.host == a.domain))).one()
        return not row.is_unavailable

    assert not await available()
    bob_on_a = await known(a, b, "bob")
    await post(a, "alice", f"@bob@{b.domain} hello", "direct", [bob_on_a])
    await eventually(available)
