"""Timelines: home (materialised), public, local/remote and hashtag, with Link pagination."""

from __future__ import annotations

import re

from server.social import graph
from tests.api.client import ApiClient, client_for
from tests.harness import Node


def _links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header)}


async def test_home_timeline_pages_with_link_headers(node: Node) -> None:
    alice = await client_for(node, "alice")
    posted = [
        (await alice.post("/api/v1/statuses", status=f"post {n}")).body["id"] for n in range(5)
    ]
    first = await alice.get("/api/v1/timelines/home", limit=2)
    assert [s["id"] for s in first.body] == posted[::-1][:2]
    links = _links(first.headers["Link"])
    assert f"max_id={posted[3]}" in links["next"]
    assert f"min_id={posted[4]}" in links["prev"]
    second = await alice.request("GET", links["next"].removeprefix(node.base_url))
    assert [s["id"] for s in second.body] == [posted[2], posted[1]]
    newer = await alice.get("/api/v1/timelines/home", min_id=posted[1], limit=2)
    assert [s["id"] for s in newer.body] == [posted[3], posted[2]]
    since = await alice.get("/api/v1/timelines/home", since_id=posted[1], limit=2)
    assert [s["id"] for s in since.body] == [posted[4], posted[3]]
    assert (await alice.get("/api/v1/timelines/home", limit="many")).status == 422


async def test_home_shows_followed_accounts_and_not_strangers(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    carol = await client_for(node, "carol")
    alice_account, bob_account = await node.account("alice"), await node.account("bob")
    await node.perform(
        lambda conn, now: graph.follow(conn, node.urls, alice_account, bob_account, now)
    )
    followed = (await bob.post("/api/v1/statuses", status="from bob")).body["id"]
    await carol.post("/api/v1/statuses", status="from carol")
    home = await alice.get("/api/v1/timelines/home")
    assert [s["id"] for s in home.body] == [followed]


async def test_public_and_tag_timelines(node: Node) -> None:
    alice = await client_for(node, "alice")
    tagged = (await alice.post("/api/v1/statuses", status="about #Cats")).body["id"]
    plain = (await alice.post("/api/v1/statuses", status="nothing")).body["id"]
    await alice.post("/api/v1/statuses", status="quiet #cats", visibility="unlisted")
    anonymous = ApiClient(node, None)
    public = await anonymous.get("/api/v1/timelines/public")
    assert [s["id"] for s in public.body] == [plain, tagged]
    local = await anonymous.get("/api/v1/timelines/public", local="true")
    assert [s["id"] for s in local.body] == [plain, tagged]
    remote = await anonymous.get("/api/v1/timelines/public", remote="1")
    assert remote.body == []
    tag = await anonymous.get("/api/v1/timelines/tag/cats")
    assert [s["id"] for s in tag.body] == [tagged]


async def test_home_leaves_out_strangers_mentions_and_half_conversations(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    carol = await client_for(node, "carol")
    alice_account, bob_account = await node.account("alice"), await node.account("bob")
    await node.perform(
        lambda conn, now: graph.follow(conn, node.urls, alice_account, bob_account, now)
    )
    carol_post = (await carol.post("/api/v1/statuses", status="hey @alice")).body["id"]
    await bob.post("/api/v1/statuses", status="to carol", in_reply_to_id=carol_post)
    to_alice = (
        await bob.post("/api/v1/statuses", status="@alice hi", in_reply_to_id=carol_post)
    ).body["id"]
    home = await alice.get("/api/v1/timelines/home")
    assert [s["id"] for s in home.body] == [to_alice]
