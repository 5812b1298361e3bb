"""Likes, boosts and reports across nodes, and their undoing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from federation.dispatch import Outbound
from protocol.activities import render_activity
from server.identity.accounts import instance_actor
from server.social import interactions
from server.social.statuses import boost_by
from server.storage.tables import reports
from tests.federation.social import follow, follow_state, known, post, remote, stored
from tests.harness import Node, eventually

ACCEPTED = "accepted"


async def _follows(node: Node, username: str, other: Node, target: str) -> None:
    account = await known(node, other, target)
    await follow(node, username, account)
    local = await node.account(username)
    await eventually(lambda: follow_state(node, local, account), ACCEPTED.__eq__)


async def _likes(node: Node, status_id: int) -> int:
    async with node.db.read() as conn:
        return await interactions.favourite_count(conn, status_id)


async def test_a_like_and_its_undo_reach_the_author(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await _follows(a, "alice", b, "bob")
    status = await post(b, "bob", "like me")
    on_a = await eventually(lambda: stored(a, status.uri))
    alice = await a.account("alice")
    await a.perform(lambda conn, now: interactions.like(conn, a.urls, alice, on_a, now))
    await eventually(lambda: _likes(b, status.id), (1).__eq__)
    await a.perform(lambda conn, now: interactions.unlike(conn, a.urls, alice, on_a, now))
    await eventually(lambda: _likes(b, status.id), (0).__eq__)


async def test_a_boost_reaches_the_boosters_followers_and_its_undo_removes_it(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, c = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await c.create_user("carl")
    await _follows(a, "alice", b, "bob")
    await _follows(c, "carl", a, "alice")  # carl never heard of bob
    status = await post(b, "bob", "worth sharing")
    on_a = await eventually(lambda: stored(a, status.uri))
    alice = await a.account("alice")
    boost = await a.perform(lambda conn, now: interactions.boost(conn, a.urls, alice, on_a, now))

    original_on_c = await eventually(lambda: stored(c, status.uri))  # fetched from B
    assert "worth sharing" in original_on_c.content
    boost_on_c = await eventually(lambda: stored(c, boost.uri))
    assert boost_on_c.reblog_of_id == original_on_c.id

    async def boosted_on_b() -> bool:
        alice_on_b = await remote(b, a.urls.actor(alice))
        async with b.db.read() as conn:
            return (
                alice_on_b is not None
                and await boost_by(conn, alice_on_b.id, status.id) is not None
            )

    await eventually(boosted_on_b)
    await a.perform(lambda conn, now: interactions.unboost(conn, a.urls, alice, on_a, now))
    await eventually(lambda: stored(c, boost.uri), lambda found: found is None)
    await eventually(boosted_on_b, lambda found: not found)


async def test_followers_only_posts_cannot_be_boosted(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await _follows(a, "alice", b, "bob")
    status = await post(b, "bob", "just us", "private")
    on_a = await eventually(lambda: stored(a, status.uri))
    alice = await a.account("alice")
    with pytest.raises(interactions.InvalidAction, match="public"):
        await a.perform(lambda conn, now: interactions.boost(conn, a.urls, alice, on_a, now))


async def test_a_report_from_another_server_arrives_as_a_flag(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    status = await post(a, "alice", "something objectionable")
    alice_on_b = await known(b, a, "alice")
    async with b.db.read() as conn:
        reporter = await instance_actor(conn)
    assert reporter is not None
    flag = render_activity(
        "Flag",
        b.urls.activity(1),
        b.urls.actor(reporter),
        [a.urls.actor(await a.account("alice")), status.uri],
        content="spam",
    )
    outbound = Outbound(flag, b.urls.actor(reporter), (alice_on_b.uri,))
    await b.perform(lambda conn, now: _return([outbound]))

    async def received() -> list:
        async with a.db.read() as conn:
            return (await conn.execute(select(reports))).all()

    (report,) = await eventually(received)
    assert report.comment == "spam"
    assert json.loads(report.status_uris) == [status.uri]


async def _return(value):
    return value
