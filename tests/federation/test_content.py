"""Posts after they are made: replies keep their thread, edits and deletions reach everyone."""

from __future__ import annotations

from server.social import posting, profiles
from tests.federation.social import follow, follow_state, known, post, remote, stored
from tests.harness import Node, eventually

ACCEPTED = "accepted"


async def _follows(node: Node, username: str, other: Node, target: str) -> None:
    account = await known(node, other, target)
    await follow(node, username, account)
    local = await node.account(username)
    await eventually(lambda: follow_state(node, local, account), ACCEPTED.__eq__)


async def test_a_delete_removes_the_post_everywhere_it_went(trio: tuple[Node, Node, Node]) -> None:
    a, b, c = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await c.create_user("carl")
    await _follows(a, "alice", b, "bob")
    await _follows(c, "carl", b, "bob")
    status = await post(b, "bob", "soon gone")
    await eventually(lambda: stored(a, status.uri))
    await eventually(lambda: stored(c, status.uri))
    bob = await b.account("bob")
    await b.perform(lambda conn, now: posting.delete_status(conn, b.urls, bob, status, now))
    await eventually(lambda: stored(a, status.uri), lambda found: found is None)
    await eventually(lambda: stored(c, status.uri), lambda found: found is None)


async def test_an_edit_reaches_followers(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await _follows(a, "alice", b, "bob")
    status = await post(b, "bob", "first draft")
    await eventually(lambda: stored(a, status.uri))
    bob = await b.account("bob")
    await b.perform(
        lambda conn, now: posting.edit_status(conn, b.urls, bob, status, "second draft", now)
    )
    edited = await eventually(
        lambda: stored(a, status.uri), lambda found: "second draft" in found.content
    )
    assert edited.edited_at is not None


async def test_a_reply_keeps_its_thread_and_mentions(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await _follows(a, "alice", b, "bob")
    await _follows(b, "bob", a, "alice")
    original = await post(b, "bob", "what do you think?")
    on_a = await eventually(lambda: stored(a, original.uri))
    bob_on_a = await known(a, b, "bob")
    reply = await post(a, "alice", f"@bob@{b.domain} I agree", "public", [bob_on_a], on_a)
    on_b = await eventually(lambda: stored(b, reply.uri))
    assert on_b.in_reply_to_id == original.id
    assert on_b.context_uri == original.context_uri
    assert 'class="u-url mention"' in on_b.content


async def test_a_profile_update_reaches_followers(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob", display_name="Bob")
    await _follows(a, "alice", b, "bob")
    bob = await b.account("bob")
    await b.perform(
        lambda conn, now: profiles.update_profile(
            conn, b.urls, bob, now, display_name="Robert", note="I <3 federation"
        )
    )
    bob_actor = b.urls.actor(bob)
    updated = await eventually(
        lambda: remote(a, bob_actor), lambda found: found and found.display_name == "Robert"
    )
    assert "I &lt;3 federation" in updated.note


async def test_a_deleted_account_disappears_with_its_posts(trio: tuple[Node, Node, Node]) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await _follows(a, "alice", b, "bob")
    status = await post(b, "bob", "my last words")
    await eventually(lambda: stored(a, status.uri))
    bob = await b.account("bob")
    await b.perform(lambda conn, now: profiles.delete_account(conn, b.urls, bob, now))
    bob_actor = b.urls.actor(bob)
    gone = await eventually(
        lambda: remote(a, bob_actor), lambda found: found is not None and found.is_deleted
    )
    assert gone.is_deleted
    assert await stored(a, status.uri) is None
    alice = await a.account("alice")
    assert await follow_state(a, alice, gone) is None


async def test_collections_list_public_posts_followers_and_following(
    trio: tuple[Node, Node, Node],
) -> None:
    a, b, _ = trio
    await a.create_user("alice")
    await b.create_user("bob")
    await _follows(a, "alice", b, "bob")
    public = await post(b, "bob", "listed")
    await post(b, "bob", "not listed", "private")
    headers = {"Accept": "application/activity+json"}
    bob_actor = b.urls.actor(await b.account("bob"))
    alice_actor = a.urls.actor(await a.account("alice"))
    async with b.http.get(f"{bob_actor}/outbox", headers=headers) as response:
        outbox = await response.json(content_type=None)
    assert outbox["totalItems"] == 1
    async with b.http.get(outbox["first"], headers=headers) as response:
        page = await response.json(content_type=None)
    assert [item["object"]["id"] for item in page["orderedItems"]] == [public.uri]
    async with b.http.get(f"{bob_actor}/followers?page=true", headers=headers) as response:
        assert (await response.json(content_type=None))["orderedItems"] == [alice_actor]
    async with a.http.get(f"{alice_actor}/following?page=true", headers=headers) as response:
        assert (await response.json(content_type=None))["orderedItems"] == [bob_actor]
