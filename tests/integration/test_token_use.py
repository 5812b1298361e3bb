"""Token use (last used, last active) is written off the request path: in one batch shortly
after, and before the node stops."""

from __future__ import annotations

from sqlalchemy import select

from server.api.auth import TOKEN_USE
from server.storage.tables import access_tokens, accounts
from tests.harness import Node, NodeFactory


async def _verify_credentials(node: Node, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with node.http.get("/api/v1/accounts/verify_credentials", headers=headers) as r:
        assert r.status == 200


async def _last_used(node: Node) -> list[object]:
    async with node.db.read() as conn:
        return list((await conn.execute(select(access_tokens.c.last_used_at))).scalars())


async def test_uses_are_written_after_the_answer_in_one_batch(node: Node) -> None:
    await node.create_user("alice")
    await node.create_user("bob")
    tokens = [await node.create_token("alice"), await node.create_token("bob")]
    for token in tokens * 3:
        await _verify_credentials(node, token)
    assert await _last_used(node) == [None, None]  # the answers did not wait for a write

    await node.app[TOKEN_USE].flush()
    assert await _last_used(node) == [node.clock()] * 2
    async with node.db.read() as conn:
        active = (await conn.execute(select(accounts.c.last_active_at))).scalars().all()
    assert sorted(a for a in active if a is not None) == [node.clock()] * 2


async def test_uses_noted_before_a_stop_are_written_when_the_node_stops(
    nodes: NodeFactory,
) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    await _verify_credentials(node, await node.create_token("alice"))
    await node.runner.cleanup()  # stops the app, which writes what it noted
    assert await _last_used(node) == [node.clock()]
