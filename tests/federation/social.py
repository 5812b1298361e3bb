"""Test helpers: local actions on a node, and what a node has stored."""

from __future__ import annotations

from sqlalchemy import select

from federation.tables import deliveries
from server.identity.accounts import Account
from server.social import graph, interactions, posting
from server.social.remote_accounts import account_by_uri
from server.social.statuses import Status, status_by_uri
from server.social.visibility import can_see
from tests.harness import Node


async def known(node: Node, other: Node, username: str) -> Account:
    """The account `username@other` as `node` knows it (resolved over WebFinger)."""
    return await node.federation.resolve_account(other.handle(username))


async def follow(node: Node, username: str, target: Account) -> None:
    local = await node.account(username)
    await node.perform(lambda conn, now: graph.follow(conn, node.urls, local, target, now))


async def unfollow(node: Node, username: str, target: Account) -> None:
    local = await node.account(username)
    await node.perform(lambda conn, now: graph.unfollow(conn, node.urls, local, target, now))


async def post(
    node: Node,
    username: str,
    text: str,
    visibility: str = "public",
    mentions: list[Account] | None = None,
    in_reply_to: Status | None = None,
) -> Status:
    author = await node.account(username)
    return await node.perform(
        lambda conn, now: posting.publish_status(
            conn, node.urls, author, text, now, visibility, mentions, in_reply_to
        )
    )


async def stored(node: Node, uri: str) -> Status | None:
    async with node.db.read() as conn:
        return await status_by_uri(conn, uri)


async def visible_to(node: Node, username: str | None, uri: str) -> bool:
    async with node.db.read() as conn:
        status = await status_by_uri(conn, uri)
        viewer = await node.account(username) if username else None
        return status is not None and await can_see(conn, viewer, status)


async def follow_state(node: Node, follower: Account, target: Account) -> str | None:
    async with node.db.read() as conn:
        found = await graph.follow_between(conn, follower.id, target.id)
    return found.state if found else None


async def remote(node: Node, actor_uri: str) -> Account | None:
    async with node.db.read() as conn:
        return await account_by_uri(conn, actor_uri)


async def delivery_states(node: Node) -> list[str]:
    async with node.db.read() as conn:
        return [row.state for row in await conn.execute(select(deliveries.c.state))]


__all__ = ["interactions"]
