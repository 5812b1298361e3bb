"""Followers-only and direct posts reach only those they are addressed to."""

from __future__ import annotations

from tests.federation.social import follow, follow_state, known, post, stored, visible_to
from tests.harness import Node, eventually

ACCEPTED = "accepted"


async def _following(follower_node: Node, username: str, target_node: Node, target: str) -> None:
    target_account = await known(follower_node, target_node, target)
    await follow(follower_node, username, target_account)
    local = await follower_node.account(username)
    await eventually(lambda: follow_state(follower_node, local, target_account), ACCEPTED.__eq__)


async def test_followers_only_posts_reach_followers_and_no_one_else(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, c = trio
    await a.create_user("alice")
    await a.create_user("amos")  # on alice's node, but not a follower
    await b.create_user("bob")
    await c.create_user("carl")
    await _following(a, "alice", b, "bob")
    await known(c, b, "bob")  # C knows bob but does not follow him

    status = await post(b, "bob", "for my followers", visibility="private")
    arrived = await eventually(lambda: stored(a, status.uri))
    assert arrived.visibility == "private"
    assert await visible_to(a, "alice", status.uri)
    assert not await visible_to(a, "amos", status.uri)
    assert not await visible_to(a, None, status.uri)
    public = await post(b, "bob", "for everyone")  # delivered after the first: a barrier
    await eventually(lambda: stored(a, public.uri))
    assert await stored(c, status.uri) is None


async def test_direct_messages_reach_only_the_mentioned(trio: tuple[Node, Node, Node]) -> None:
    a, b, c = trio
    await a.create_user("alice")
    await a.create_user("amos")
    await b.create_user("bob")
    await c.create_user("carl")
    await _following(a, "amos", b, "bob")  # a follower on the same node must not see it
    await _following(c, "carl", b, "bob")
    alice = await known(b, a, "alice")

    status = await post(b, "bob", f"@alice@{a.domain} just for you", "direct", [alice])
    arrived = await eventually(lambda: stored(a, status.uri))
    assert arrived.visibility == "direct"
    assert await visible_to(a, "alice", status.uri)
    assert not await visible_to(a, "amos", status.uri)
    barrier = await post(b, "bob", "public after the DM")
    await eventually(lambda: stored(c, barrier.uri))
    assert await stored(c, status.uri) is None


async def test_unlisted_posts_federate_as_unlisted(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await _following(a, "alice", b, "bob")
    status = await post(b, "bob", "quietly public", visibility="unlisted")
    arrived = await eventually(lambda: stored(a, status.uri))
    assert arrived.visibility == "unlisted"
    assert await visible_to(a, None, status.uri)
