"""Private before bulk: a direct message is not held up by a big public fan-out.

A post to 320 followers with personal inboxes on eight slow servers (each answers after a
few seconds) is under way; a direct message queued then must reach its recipients, on a fast
server and on one of the slow ones, at once: it waits neither for the fan-out nor for a slot.
Before the delivery lanes it arrived after 35 s, behind 304 of the 320.
"""

from __future__ import annotations

import asyncio
import json

from protocol.actors import parse_actor
from server.social import graph
from server.social.remote_accounts import upsert_remote_account
from tests.federation.fake_peer import Peer, RemoteUser, new_rsa_key
from tests.federation.social import post
from tests.harness import Node, NodeFactory, eventually

SLOW_HOSTS = 8
FOLLOWERS_PER_HOST = 40
SLOW_S = 2.0
# Far less than the wait for a bulk delivery to free a slot: the message waits for none.
DIRECT_WITHIN_S = SLOW_S / 2


async def _known(node: Node, users: list[RemoteUser], shared_inbox: bool) -> list:
    """The users as the node would have stored them after fetching them; no request made."""
    found = []
    async with node.db.transaction() as conn:
        for user in users:
            document = user.document()
            if not shared_inbox:
                del document["endpoints"]
            actor = parse_actor(document)
            await node.federation.directory.store(conn, actor, document, node.clock())
            found.append(await upsert_remote_account(conn, actor, node.clock()))
    return found


async def _count(servers: list[Peer], activity_id: str) -> int:
    """How many POSTs of the activity the servers have received (answered or not)."""
    return sum(json.loads(body).get("id") == activity_id for s in servers for *_, body in s.posts())


def _received(peer: Peer, activity_id: str) -> bool:
    return any(json.loads(body).get("id") == activity_id for *_, body in peer.posts())


async def test_a_direct_message_overtakes_a_public_fan_out_to_slow_servers(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    alice = await node.create_user("alice")
    slow = [peer, *[await peer.spawn() for _ in range(SLOW_HOSTS - 1)]]
    fast = await peer.spawn()
    key = new_rsa_key()  # one key for all of them: nobody checks their signatures here
    followers = await _known(
        node,
        [RemoteUser(p, f"f{n}", key) for p in slow for n in range(FOLLOWERS_PER_HOST)],
        shared_inbox=False,
    )
    async with node.db.transaction() as conn:
        for follower in followers:
            uri = f"{follower.uri}#follows/alice"
            await graph.insert_follow(conn, follower.id, alice.id, uri, "accepted", node.clock())
    bob, carol = await _known(
        node, [RemoteUser(fast, "bob", key), RemoteUser(slow[0], "carol", key)], True
    )
    for server in slow:
        server.inbox_delay_s = SLOW_S

    public = await post(node, "alice", "hello everyone")
    bulk = f"{public.uri}/activity"
    await eventually(lambda: _count(slow, bulk))  # the fan-out is under way
    direct = await post(node, "alice", "@bob @carol psst", "direct", [bob, carol])
    loop = asyncio.get_running_loop()
    queued_at = loop.time()
    create = f"{direct.uri}/activity"
    waiting = {"bob": fast, "carol": slow[0]}
    took: dict[str, float] = {}
    while waiting and loop.time() - queued_at < 60:
        for name, server in list(waiting.items()):
            if _received(server, create):
                took[name] = loop.time() - queued_at
                del waiting[name]
        await asyncio.sleep(0.01)
    fan_out = await _count(slow, bulk)
    assert not waiting, f"the direct message never reached {sorted(waiting)}"
    assert max(took.values()) < DIRECT_WITHIN_S, (took, fan_out)
    assert fan_out < SLOW_HOSTS * FOLLOWERS_PER_HOST, fan_out
