"""Follows and posts between three Kith nodes, with Mastodon's visibility rules."""

from __future__ import annotations

from tests.federation.social import (
    follow,
    follow_state,
    known,
    post,
    remote,
    stored,
    visible_to,
)
from tests.harness import Node, eventually

ACCEPTED = "accepted"


async def test_a_follow_is_accepted_and_public_posts_arrive(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    bob_on_a = await known(a, b, "bob")
    alice = await a.account("alice")
    await follow(a, "alice", bob_on_a)
    await eventually(lambda: follow_state(a, alice, bob_on_a), until=ACCEPTED.__eq__)
    alice_on_b = await remote(b, a.urls.actor(alice))
    assert alice_on_b is not None
    assert await follow_state(b, alice_on_b, await b.account("bob")) == "accepted"

    status = await post(b, "bob", "Hello from B #kith")
    arrived = await eventually(lambda: stored(a, status.uri))
    assert arrived.visibility == "public"
    assert "Hello from B" in arrived.content
    assert await visible_to(a, "alice", status.uri)
