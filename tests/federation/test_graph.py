"""Follow requests, unfollows and blocks across nodes."""

from __future__ import annotations

import pytest

from server.social import graph, profiles
from tests.federation.social import follow, follow_state, known, post, remote, stored, unfollow
from tests.harness import Node, eventually

ACCEPTED, REQUESTED = "accepted", "requested"


async def test_a_locked_account_approves_a_request_before_its_follower_is_accepted(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    bob = await b.account("bob")
    await b.perform(lambda conn, now: _lock(conn, bob.id))
    bob_on_a = await known(a, b, "bob")
    assert bob_on_a.is_locked
    alice = await a.account("alice")
    await follow(a, "alice", bob_on_a)
    alice_on_b = await eventually(lambda: remote(b, a.urls.actor(alice)))
    await eventually(lambda: follow_state(b, alice_on_b, bob), REQUESTED.__eq__)
    assert await follow_state(a, alice, bob_on_a) == REQUESTED

    private = await post(b, "bob", "followers only", "private")
    public = await post(b, "bob", "public")  # not followed yet: nothing reaches A
    await b.perform(
        lambda conn, now: graph.answer_follow_request(conn, b.urls, bob, alice_on_b, True, now)
    )
    await eventually(lambda: follow_state(a, alice, bob_on_a), ACCEPTED.__eq__)
    assert await stored(a, private.uri) is None
    assert await stored(a, public.uri) is None


async def test_a_rejected_request_disappears_on_both_sides(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    bob = await b.account("bob")
    await b.perform(lambda conn, now: _lock(conn, bob.id))
    bob_on_a = await known(a, b, "bob")
    alice = await a.account("alice")
    await follow(a, "alice", bob_on_a)
    alice_on_b = await eventually(lambda: remote(b, a.urls.actor(alice)))
    await eventually(lambda: follow_state(b, alice_on_b, bob), REQUESTED.__eq__)
    await b.perform(
        lambda conn, now: graph.answer_follow_request(conn, b.urls, bob, alice_on_b, False, now)
    )
    await eventually(lambda: follow_state(a, alice, bob_on_a), lambda state: state is None)
    assert await follow_state(b, alice_on_b, bob) is None


async def test_unfollow_removes_the_follow_on_the_other_node(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    bob_on_a = await known(a, b, "bob")
    alice = await a.account("alice")
    await follow(a, "alice", bob_on_a)
    alice_on_b = await eventually(lambda: remote(b, a.urls.actor(alice)))
    bob = await b.account("bob")
    await eventually(lambda: follow_state(b, alice_on_b, bob), ACCEPTED.__eq__)
    await unfollow(a, "alice", bob_on_a)
    await eventually(lambda: follow_state(b, alice_on_b, bob), lambda state: state is None)
    later = await post(b, "bob", "after the unfollow")
    barrier_target = await known(b, a, "alice")
    dm = await post(b, "bob", "a direct note", "direct", [barrier_target])
    await eventually(lambda: stored(a, dm.uri))
    assert await stored(a, later.uri) is None


async def test_a_block_severs_follows_both_ways(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    bob_on_a = await known(a, b, "bob")
    alice = await a.account("alice")
    bob = await b.account("bob")
    await follow(a, "alice", bob_on_a)
    await eventually(lambda: follow_state(a, alice, bob_on_a), ACCEPTED.__eq__)
    alice_on_b = await remote(b, a.urls.actor(alice))
    assert alice_on_b is not None
    await b.perform(lambda conn, now: graph.follow(conn, b.urls, bob, alice_on_b, now))
    await eventually(lambda: follow_state(b, bob, alice_on_b), ACCEPTED.__eq__)

    await b.perform(lambda conn, now: graph.block(conn, b.urls, bob, alice_on_b, now))
    assert await follow_state(b, alice_on_b, bob) is None
    assert await follow_state(b, bob, alice_on_b) is None
    await eventually(lambda: follow_state(a, alice, bob_on_a), lambda state: state is None)
    await eventually(lambda: follow_state(a, bob_on_a, alice), lambda state: state is None)
    async with a.db.read() as conn:
        assert await graph.block_between(conn, bob_on_a.id, alice.id) is not None
    with pytest.raises(graph.InvalidAction, match="block"):
        await follow(a, "alice", bob_on_a)

    await b.perform(lambda conn, now: graph.unblock(conn, b.urls, bob, alice_on_b, now))

    async def unblocked() -> bool:
        async with a.db.read() as conn:
            return await graph.block_between(conn, bob_on_a.id, alice.id) is None

    await eventually(unblocked)


async def _lock(conn, account_id: int) -> list:
    from sqlalchemy import update

    from server.storage.tables import accounts

    await conn.execute(update(accounts).where(accounts.c.id == account_id).values(is_locked=True))
    return []


async def test_a_move_carries_followers_to_the_new_account(trio: tuple[Node, Node, Node]) -> None:
    a, b, c = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await c.create_user("alice2")
    alice_on_b = await known(b, a, "alice")
    await follow(b, "bob", alice_on_b)
    bob = await b.account("bob")
    await eventually(lambda: follow_state(b, bob, alice_on_b), ACCEPTED.__eq__)

    alice2 = await c.account("alice2")
    alice = await a.account("alice")
    await c.perform(
        lambda conn, now: profiles.set_aliases(conn, c.urls, alice2, [a.urls.actor(alice)], now)
    )
    alice2_on_a = await known(a, c, "alice2")
    await a.perform(lambda conn, now: profiles.move_account(conn, a.urls, alice, alice2_on_a, now))

    alice2_on_b = await eventually(lambda: remote(b, c.urls.actor(alice2)))
    await eventually(lambda: follow_state(b, bob, alice2_on_b), ACCEPTED.__eq__)
    await eventually(lambda: follow_state(b, bob, alice_on_b), lambda state: state is None)
    moved = await remote(b, a.urls.actor(alice))
    assert moved is not None
    assert moved.moved_to_uri == c.urls.actor(alice2)


async def test_a_move_to_an_account_that_does_not_claim_the_origin_is_ignored(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, c = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await c.create_user("mallory")
    alice_on_b = await known(b, a, "alice")
    await follow(b, "bob", alice_on_b)
    bob = await b.account("bob")
    await eventually(lambda: follow_state(b, bob, alice_on_b), ACCEPTED.__eq__)
    mallory_on_a = await known(a, c, "mallory")
    alice = await a.account("alice")
    await a.perform(lambda conn, now: profiles.move_account(conn, a.urls, alice, mallory_on_a, now))
    barrier = await post(a, "alice", "still here")
    await eventually(lambda: stored(b, barrier.uri))
    assert await follow_state(b, bob, alice_on_b) == ACCEPTED
