"""Direct messages across servers: delivered only to the participants' servers, never served
to anyone else (signed or not), deleted exactly where they went.

Node A: alice (who writes), bob (a participant), eve (not one). Node B (Kith): carol (a
participant, who answers) and zoe (not one). A fake peer P hosts dave, who follows alice, and
mallory, who asks for things with signed GETs; another fake peer P2 hosts frank, a
participant whose account is later removed.
"""

from __future__ import annotations

import json
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import httpsig
import pytest
from sqlalchemy import select

from federation.actors import ActorUnavailable
from federation.tables import deliveries
from server.social import graph, posting
from server.social.statuses import Status
from tests.api.client import ApiClient, client_for
from tests.api.test_media import picture, upload
from tests.federation.fake_peer import AS2, PUBLIC, Peer, activity, deliver
from tests.federation.fake_peer import known as fetched
from tests.federation.social import known, remote, stored
from tests.harness import Node, NodeFactory, eventually


def _signed_get(peer: Peer, node: Node, path: str, when: datetime) -> dict[str, str]:
    """Headers of a GET signed by mallory as Mastodon signs its fetches."""
    headers = {"Host": node.domain, "Date": format_datetime(when, usegmt=True), "Accept": AS2}
    signer = httpsig.HeaderSigner(
        peer.key_id,
        peer.private_pem(),
        algorithm="rsa-sha256",
        headers=["(request-target)", "host", "date", "accept"],
        sign_header="signature",
    )
    return signer.sign(headers, method="GET", path=path)


async def _inbox_hosts(node: Node, activity_id: str) -> set[str]:
    async with node.db.read() as conn:
        rows = await conn.execute(
            select(deliveries.c.host).where(deliveries.c.activity_id == activity_id)
        )
        return set(rows.scalars())


async def _delete_hosts(node: Node, uri: str) -> set[str]:
    """The hosts a Delete of `uri` is queued for."""
    async with node.db.read() as conn:
        rows = (await conn.execute(select(deliveries.c.host, deliveries.c.body))).all()
    return {
        row.host
        for row in rows
        if (body := json.loads(row.body))["type"] == "Delete" and uri in json.dumps(body)
    }


def _posted(peer: Peer, text: str) -> bool:
    return any(text in body.decode() for *_, body in peer.posts())


async def _direct_message(a: Node, alice: ApiClient, recipients: list[Any], text: str) -> Status:
    media = (await upload(alice, picture("PNG"), description="the plan")).body
    author = await a.account("alice")
    return await a.perform(
        lambda conn, now: posting.publish_status(
            conn, a.urls, author, text, now, "direct", recipients, media_ids=[int(media["id"])]
        )
    )


async def test_a_direct_message_goes_only_to_its_participants_servers_and_its_delete_too(
    nodes: NodeFactory, peer: Peer
) -> None:
    a, b = await nodes.start(), await nodes.start()
    alice = await client_for(a, "alice")
    await a.create_user("bob")
    eve = await client_for(a, "eve")
    carol = await client_for(b, "carol")
    zoe = await client_for(b, "zoe")
    p2 = await peer.spawn()
    frank_user = p2.user("frank")
    dave = await fetched(a, peer.user("dave"))
    alice_account = await a.account("alice")
    async with a.db.transaction() as conn:
        await graph.insert_follow(
            conn, dave.id, alice_account.id, f"{dave.uri}#f", "accepted", a.clock()
        )

    public = await alice.post("/api/v1/statuses", status="hello followers")
    await eventually(lambda: _is_posted(peer, public.body["uri"]))

    carol_on_a = await known(a, b, "carol")
    frank = await fetched(a, frank_user)
    bob = await a.account("bob")
    text = f"@bob @carol@{b.domain} @frank@{p2.base.split('//')[1]} the secret plan"
    dm = await _direct_message(a, alice, [bob, carol_on_a, frank], text)
    await eventually(lambda: stored(b, dm.uri))
    await eventually(lambda: _is_posted(p2, dm.uri))

    # Delivered to B (carol) and P2 (frank); never to P, which only follows alice.
    assert await _inbox_hosts(a, f"{dm.uri}/activity") == {b.urls.authority, _host(p2)}
    assert not _posted(peer, dm.uri)

    # Carol answers from B: it goes to A only.
    on_b = await stored(b, dm.uri)
    assert on_b is not None
    answer = await carol.post(
        "/api/v1/statuses",
        status=f"@alice@{a.domain} @bob@{a.domain} secret received",
        visibility="direct",
        in_reply_to_id=str(on_b.id),
    )
    assert answer.status == 200, answer.body
    reply = await eventually(lambda: stored(a, answer.body["uri"]))
    assert await _inbox_hosts(b, f"{answer.body['uri']}/activity") == {a.urls.authority}
    assert not _posted(peer, answer.body["uri"])
    assert not _posted(p2, answer.body["uri"])

    # Outsiders on A and on B, signed in or not, find nothing of it.
    outsiders = {"eve": eve, "anonymous on A": ApiClient(a, None)}
    for who, client in outsiders.items():
        for status in (dm, reply):
            for suffix in ("", "/context", "/favourited_by", "/reblogged_by"):
                got = await client.get(f"/api/v1/statuses/{status.id}{suffix}")
                assert got.status == 404, (who, status.uri, suffix)
        context = (await client.get(f"/api/v1/statuses/{public.body['id']}/context")).body
        assert context == {"ancestors": [], "descendants": []}
    for query in (dm.uri, answer.body["uri"], answer.body["url"], "secret"):
        found = (await eve.get("/api/v2/search", q=query, resolve="true")).body
        assert found["statuses"] == [], query
    for who, client in {"zoe": zoe, "anonymous on B": ApiClient(b, None)}.items():
        assert (await client.get(f"/api/v1/statuses/{on_b.id}")).status == 404, who
        assert "secret" not in str((await client.get("/api/v1/timelines/public")).body), who
    found = (await zoe.get("/api/v2/search", q=dm.uri, resolve="true")).body
    assert found["statuses"] == []

    # The ActivityPub documents: not to an unsigned GET, nor to a signed one from P.
    for path in (dm.uri.removeprefix(a.base_url), dm.uri.removeprefix(a.base_url) + "/activity"):
        async with a.http.get(path, headers={"Accept": AS2}) as response:
            assert response.status == 404, path
        headers = _signed_get(peer, a, path, a.clock())
        async with a.http.get(path, headers=headers) as response:
            assert response.status == 404, path

    # frank's account is removed, and A learns his server has forgotten him (410): the
    # Delete still reaches his server, which had the message, and only the servers that had.
    gone = activity(frank_user, "Delete", "frank-gone", frank_user.actor)
    assert await deliver(a, frank_user, gone) == 202
    await eventually(lambda: _deleted(a, frank_user.actor))
    p2.serve("/users/frank", {}, status=410)
    with pytest.raises(ActorUnavailable):  # gone: what A now knows
        await a.federation.directory.fetch(frank_user.actor)
    assert (await alice.delete(f"/api/v1/statuses/{dm.id}")).status == 200
    assert await _delete_hosts(a, dm.uri) == {b.urls.authority, _host(p2)}
    await eventually(lambda: _gone(b, dm.uri))
    await eventually(lambda: _is_posted_delete(p2, dm.uri))
    assert not _posted(peer, dm.uri)


def _host(peer: Peer) -> str:
    return peer.base.split("//", 1)[1]


async def _is_posted(peer: Peer, text: str) -> bool:
    return _posted(peer, text)


async def _is_posted_delete(peer: Peer, uri: str) -> bool:
    return any(
        json.loads(body).get("type") == "Delete" and uri in body.decode()
        for *_, body in peer.posts()
    )


async def _gone(node: Node, uri: str) -> bool:
    return await stored(node, uri) is None


async def _deleted(node: Node, uri: str) -> bool:
    account = await remote(node, uri)
    return account is not None and account.is_deleted


async def test_a_peer_cannot_make_its_direct_message_public_by_boosting_it(
    nodes: NodeFactory, peer: Peer
) -> None:
    a = await nodes.start()
    alice = await client_for(a, "alice")
    eve = await client_for(a, "eve")
    alice_uri = a.url("/users/alice")
    note = {
        "id": f"{peer.actor}/notes/dm",
        "type": "Note",
        "attributedTo": peer.actor,
        "content": "<p>@alice a secret</p>",
        "to": [alice_uri],
        "cc": [],
        "tag": [{"type": "Mention", "href": alice_uri, "name": f"@alice@{a.domain}"}],
    }
    create = activity(peer.mallory, "Create", "dm", note, to=[alice_uri])
    assert await deliver(a, peer, create) == 202
    await eventually(lambda: stored(a, note["id"]))
    mallory = await remote(a, peer.actor)
    assert mallory is not None
    eve_id = (await eve.get("/api/v1/accounts/verify_credentials")).body["id"]
    assert eve_id
    boost = activity(peer.mallory, "Announce", "boost-dm", note["id"])
    boost["cc"] = [f"{peer.actor}/followers"]
    assert await deliver(a, peer, boost) == 202
    await eventually(lambda: _finished(a, boost["id"]))
    for client in (eve, ApiClient(a, None)):
        shown = await client.get(f"/api/v1/accounts/{mallory.id}/statuses")
        assert shown.status == 200
        assert "secret" not in str(shown.body)
        assert "secret" not in str((await client.get("/api/v1/timelines/public")).body)
    (thread,) = (await alice.get("/api/v1/conversations")).body
    assert thread["last_status"]["uri"] == note["id"]


async def _finished(node: Node, activity_id: str) -> bool:
    from federation.tables import inbox_items

    async with node.db.read() as conn:
        state = await conn.scalar(
            select(inbox_items.c.state).where(inbox_items.c.activity_id == activity_id)
        )
    return state not in (None, "queued")


async def test_a_self_boost_of_a_followers_only_post_stays_followers_only(
    nodes: NodeFactory, peer: Peer
) -> None:
    a = await nodes.start()
    eve = await client_for(a, "eve")
    mallory = await fetched(a, peer.mallory)
    eve_account = await a.account("eve")
    async with a.db.transaction() as conn:
        await graph.insert_follow(conn, eve_account.id, mallory.id, "urn:f", "accepted", a.clock())
    followers = f"{peer.actor}/followers"
    note = {
        "id": f"{peer.actor}/notes/fo",
        "type": "Note",
        "attributedTo": peer.actor,
        "content": "<p>for my followers only</p>",
        "to": [followers],
        "cc": [],
    }
    assert (
        await deliver(a, peer, activity(peer.mallory, "Create", "fo", note, to=[followers])) == 202
    )
    await eventually(lambda: stored(a, note["id"]))
    boost = activity(peer.mallory, "Announce", "boost-fo", note["id"], to=[PUBLIC])
    assert await deliver(a, peer, boost) == 202
    await eventually(lambda: _finished(a, boost["id"]))
    anonymous = (await ApiClient(a, None).get(f"/api/v1/accounts/{mallory.id}/statuses")).body
    assert "followers only" not in str(anonymous)
    shown = (await eve.get(f"/api/v1/accounts/{mallory.id}/statuses")).body
    assert [s["reblog"]["uri"] for s in shown if s["reblog"]] == [note["id"]]
    assert [s["visibility"] for s in shown if s["reblog"]] == ["private"]
