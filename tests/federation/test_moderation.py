"""Moderation across two real nodes: domain blocks, account suspension, reports as Flags,
suspended users and payments, and the audit log behind every action."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from federation.dispatch import InboundActivity, Outbound
from federation.fetch import FetchError
from federation.tables import deliveries
from server import moderation
from server.moderation import SILENCE, SUSPEND
from server.storage.tables import reports
from tests.api.client import admin_client_for, client_for
from tests.federation import test_payments
from tests.federation.social import follow, follow_state, known, post, remote, stored
from tests.federation.test_payments import Pair, assert_money_conserved, balance, settled
from tests.harness import Node, NodeFactory, eventually

pair = test_payments.pair  # the payment tests' fixture: alice@a with 100.00 EUR, bob@b


@pytest.fixture
async def two(nodes: NodeFactory) -> tuple[Node, Node]:
    a, b = await nodes.start(), await nodes.start()
    await a.create_user("alice")
    await b.create_user("bob")
    return a, b


async def _mutual(a: Node, b: Node) -> None:
    """alice@a and bob@b follow each other."""
    bob = await known(a, b, "bob")
    alice = await known(b, a, "alice")
    await follow(a, "alice", bob)
    await follow(b, "bob", alice)
    await eventually(lambda: follow_state(a, a.users["alice"], bob), "accepted".__eq__)
    await eventually(lambda: follow_state(b, b.users["bob"], alice), "accepted".__eq__)


async def _actions(node: Node) -> list[tuple[str, str, str]]:
    async with node.db.read() as conn:
        entries = await moderation.audit_log(conn)
    return [(e.actor, e.action, e.target) for e in reversed(entries)]


async def _delivered(node: Node, activity_id: str) -> list[str]:
    async with node.db.read() as conn:
        rows = await conn.execute(
            select(deliveries.c.state).where(deliveries.c.activity_id == activity_id)
        )
        return [row.state for row in rows]


def _done(states: list[str]) -> bool:
    return bool(states) and all(state != "queued" for state in states)


async def test_a_suspended_domains_content_is_purged_and_its_activities_and_fetches_stop(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    await _mutual(a, b)
    before = await post(b, "bob", "hello from b")
    await eventually(lambda: stored(a, before.uri))

    await a.federation.moderate(
        lambda conn, now: moderation.block_domain(conn, b.domain, SUSPEND, "cli", now)
    )
    bob_on_a = await remote(a, b.url("/users/bob"))
    assert bob_on_a is not None
    assert bob_on_a.is_suspended
    assert await stored(a, before.uri) is None
    assert await follow_state(a, a.users["alice"], bob_on_a) is None
    assert await follow_state(a, bob_on_a, a.users["alice"]) is None

    # New activities are taken at the door (202) and dropped unread.
    after = await post(b, "bob", "still there?", mentions=[await known(b, a, "alice")])
    await eventually(lambda: _delivered_any(b), _done)
    assert await stored(a, after.uri) is None
    # Nothing is fetched from it, nothing is delivered to it.
    with pytest.raises(FetchError, match="does not federate"):
        await a.federation.fetcher.get_object(b.url("/users/bob"))
    note = {"id": a.url("/activities/probe"), "type": "Like", "actor": a.url("/users/alice")}
    outbound = Outbound(note, a.url("/users/alice"), (b.url("/users/bob"),))
    await a.perform(lambda conn, now: _return([outbound]))
    states = await eventually(lambda: _delivered(a, note["id"]), _done)
    assert states == ["failed"]
    assert ("cli", "domain_block:suspend", b.domain) in await _actions(a)

    # Eased to a silence, its accounts are no longer suspended (their content stays purged).
    await a.federation.moderate(
        lambda conn, now: moderation.block_domain(conn, b.domain, SILENCE, "cli", now)
    )
    eased = await remote(a, b.url("/users/bob"))
    assert eased is not None
    assert not eased.is_suspended
    assert await stored(a, before.uri) is None
    # Lifted, the domain federates again (its purged content does not come back).
    await a.federation.moderate(
        lambda conn, now: moderation.unblock_domain(conn, b.domain, "cli", now)
    )
    await a.federation.fetcher.get_object(b.url("/users/bob"))
    assert [x[1] for x in await _actions(a)] == [
        "domain_block:suspend",
        "domain_block:silence",
        "domain_unblock",
    ]


async def _delivered_any(node: Node) -> list[str]:
    async with node.db.read() as conn:
        return [row.state for row in await conn.execute(select(deliveries.c.state))]


async def _return(value):
    return value


async def _public(client, **params) -> list[str]:
    return [s["uri"] for s in (await client.get("/api/v1/timelines/public", **params)).body]


async def test_a_silenced_domains_posts_leave_the_public_timeline_but_not_its_followers(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    await _mutual(a, b)
    alice, carol = await client_for(a, "alice"), await client_for(a, "carol")
    loud = await post(b, "bob", "look at me")
    await eventually(lambda: stored(a, loud.uri))
    assert loud.uri in await _public(carol)

    await a.federation.moderate(
        lambda conn, now: moderation.block_domain(conn, b.domain, SILENCE, "cli", now)
    )
    assert loud.uri not in await _public(carol)
    assert loud.uri not in await _public(carol, remote="true")
    assert loud.uri in await _public(alice)  # alice follows bob
    assert await stored(a, loud.uri) is not None  # silenced, not purged
    # A new follow from the silenced domain waits for approval.
    await b.create_user("dave")
    await follow(b, "dave", await known(b, a, "carol"))
    dave_on_a = await eventually(lambda: remote(a, b.url("/users/dave")))
    state = await eventually(lambda: follow_state(a, dave_on_a, a.users["carol"]))
    assert state == "requested"
    assert ("cli", "domain_block:silence", b.domain) in await _actions(a)


async def test_a_suspended_remote_accounts_content_disappears_and_its_activities_are_dropped(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    await _mutual(a, b)
    first = await post(b, "bob", "first")
    await eventually(lambda: stored(a, first.uri))
    bob_on_a = await known(a, b, "bob")

    await a.federation.moderate(
        lambda conn, now: moderation.suspend_account(conn, bob_on_a, "cli", now, "spam")
    )
    assert await stored(a, first.uri) is None
    assert await follow_state(a, a.users["alice"], bob_on_a) is None
    second = await post(b, "bob", "second", mentions=[await known(b, a, "alice")])
    await eventually(lambda: _delivered_any(b), _done)
    assert await stored(a, second.uri) is None
    # An activity already queued in the inbox log when the suspension came is dropped too.
    queued = {"type": "Create", "actor": bob_on_a.uri, "object": {"id": b.url("/objects/x")}}
    routed = a.federation.dispatcher.handler_for("Create", queued)
    social = a.federation.dispatcher.handler_for("Create", {**queued, "actor": b.url("/users/x")})
    assert routed is not None
    assert routed is not social
    item = InboundActivity(1, b.url("/activities/x"), "Create", bob_on_a.uri, queued, a.clock())
    async with a.db.transaction() as conn:
        assert await routed.apply(conn, item, None, a.clock()) == []
    # Others on the same server still federate.
    await b.create_user("erin")
    other = await post(b, "erin", "hi alice", mentions=[await known(b, a, "alice")])
    await eventually(lambda: stored(a, other.uri))
    assert ("cli", "suspend", bob_on_a.uri) in await _actions(a)


async def test_a_forwarded_report_arrives_as_a_flag_and_is_stored_there(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    alice = await client_for(a, "alice")
    bad = await post(b, "bob", "something objectionable")
    bob_on_a = await known(a, b, "bob")
    found = await a.federation.resolve_url(bad.uri)
    assert found is not None

    filed = await alice.post(
        "/api/v1/reports",
        account_id=str(bob_on_a.id),
        status_ids=[str(found.id)],
        comment="spam, clearly",
        category="spam",
        forward=True,
    )
    assert filed.status == 200, filed.body
    assert filed.body["forwarded"] is True
    assert filed.body["status_ids"] == [str(found.id)]
    assert filed.body["target_account"]["acct"] == b.handle("bob")

    async def received() -> list:
        async with b.db.read() as conn:
            return (await conn.execute(select(reports))).all()

    (report,) = await eventually(received)
    assert report.comment == "spam, clearly"
    assert json.loads(report.status_uris) == [bad.uri]
    assert report.target_account_id == (await b.account("bob")).id
    assert ("user:alice", "report_forward", f"report:{filed.body['id']}") in await _actions(a)


async def test_a_suspended_user_cannot_use_the_api_nor_pay_nor_be_paid(pair: Pair) -> None:
    bob = await pair.b.account("bob")
    await pair.b.federation.moderate(
        lambda conn, now: moderation.suspend_account(conn, bob, "cli", now, "fraud", pair.b.urls)
    )
    # Its actor is served as Mastodon serves a suspended one: keys, no profile.
    async with pair.a.http.get(
        pair.b.url("/users/bob"), headers={"Accept": "application/activity+json"}
    ) as response:
        actor = await response.json(content_type=None)
    assert actor["suspended"] is True
    assert actor["name"] == ""
    assert actor["publicKey"]["publicKeyPem"]
    refused = await pair.bob.get("/api/kith/v1/wallet")
    assert refused.status == 403
    assert refused.body["error"] == "Your login is currently disabled"
    assert (await pair.bob.get("/api/v1/accounts/verify_credentials")).status == 403

    # Money sent to bob is rejected by his node (F99) and goes back to alice.
    sent = await pair.alice.request(
        "POST",
        "/api/kith/v1/transfers",
        json={"to": pair.bob_handle, "amount": "5.00", "currency": "EUR"},
        headers={"Idempotency-Key": "to-suspended"},
    )
    assert sent.status == 202, sent.body
    done = await settled(pair.alice, sent.body["id"])
    assert done["state"] == "rejected"
    assert done["error"]["code"] == "F99"
    assert await balance(pair.alice) == "100.00"
    await assert_money_conserved(pair.a, pair.b)

    # Suspended on alice's own node, she cannot pay either.
    alice = await pair.a.account("alice")
    await pair.a.federation.moderate(
        lambda conn, now: moderation.suspend_account(conn, alice, "cli", now)
    )
    again = await pair.alice.request(
        "POST",
        "/api/kith/v1/transfers",
        json={"to": pair.bob_handle, "amount": "1.00", "currency": "EUR"},
        headers={"Idempotency-Key": "while-suspended"},
    )
    assert again.status == 403
    assert [a[1] for a in await _actions(pair.a)] == ["suspend"]
    assert [a[1] for a in await _actions(pair.b)] == ["suspend"]


async def test_payments_to_a_suspended_domain_are_refused_and_its_account_is_kept(
    pair: Pair,
) -> None:
    sent = await pair.alice.request(
        "POST",
        "/api/kith/v1/transfers",
        json={"to": pair.bob_handle, "amount": "2.00", "currency": "EUR"},
        headers={"Idempotency-Key": "before"},
    )
    assert (await settled(pair.alice, sent.body["id"]))["state"] == "completed"
    await pair.a.federation.moderate(
        lambda conn, now: moderation.block_domain(conn, pair.b.domain, SUSPEND, "cli", now)
    )
    refused = await pair.alice.request(
        "POST",
        "/api/kith/v1/transfers",
        json={"to": pair.b.url("/users/bob"), "amount": "1.00", "currency": "EUR"},
        headers={"Idempotency-Key": "after"},
    )
    assert refused.status == 422
    assert "stopped" in refused.body["error"]
    # The peer's ledger account stays: what was paid before is still owed.
    await assert_money_conserved(pair.a, pair.b)


async def test_the_admin_api_blocks_domains_acts_on_accounts_and_reports_and_is_audited(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    root = await admin_client_for(a)
    alice = await client_for(a, "alice", "read write admin:read admin:write")
    assert (await alice.get("/api/v1/admin/accounts")).status == 403  # not an admin
    plain = await client_for(a, "carol")
    assert (await plain.get("/api/v1/admin/reports")).status == 403  # no admin scope

    bob_on_a = await known(a, b, "bob")
    await alice.post("/api/v1/reports", account_id=str(bob_on_a.id), comment="rude")
    (report,) = (await root.get("/api/v1/admin/reports")).body
    assert report["target_account"]["username"] == "bob"
    assert report["comment"] == "rude"
    silenced = await root.post(
        f"/api/v1/admin/accounts/{bob_on_a.id}/action",
        type="silence",
        text="rude",
        report_id=report["id"],
    )
    assert silenced.status == 200, silenced.body
    assert (await root.get("/api/v1/admin/reports")).body == []
    (resolved,) = (await root.get("/api/v1/admin/reports", resolved="true")).body
    assert resolved["action_taken"] is True
    remote = (await root.get("/api/v1/admin/accounts", remote="true", silenced="true")).body
    assert [x["username"] for x in remote] == ["bob"]
    assert remote[0]["account"]["limited"] is True  # as Mastodon's Account entity says it
    lifted = await root.post(f"/api/v1/admin/accounts/{bob_on_a.id}/unsilence")
    assert lifted.body["silenced"] is False

    blocked = await root.post("/api/v1/admin/domain_blocks", domain=b.domain, severity="suspend")
    assert blocked.status == 200, blocked.body
    assert blocked.body["severity"] == "suspend"
    with pytest.raises(FetchError):
        await a.federation.fetcher.get_object(b.url("/users/bob"))
    listed = (await root.get("/api/v1/admin/domain_blocks")).body
    assert [x["domain"] for x in listed] == [b.domain]
    assert (await root.delete(f"/api/v1/admin/domain_blocks/{blocked.body['id']}")).status == 200
    await a.federation.fetcher.get_object(b.url("/users/bob"))

    local = (await root.get("/api/v1/admin/accounts")).body
    assert {x["username"] for x in local} == {"alice", "carol", "root"}
    alice_id = str((await a.account("alice")).id)
    assert (
        await root.post(f"/api/v1/admin/accounts/{alice_id}/action", type="suspend")
    ).status == 200
    assert (await alice.get("/api/v1/accounts/verify_credentials")).status == 403
    shown = await root.get(f"/api/v1/accounts/{alice_id}")
    assert shown.body["suspended"] is True
    back = await root.post(f"/api/v1/admin/accounts/{alice_id}/unsuspend")
    assert back.body["suspended"] is False
    assert (await alice.get("/api/v1/accounts/verify_credentials")).status == 200
    assert await _actions(a) == [
        ("admin:root", "silence", bob_on_a.uri),
        ("admin:root", "report_resolve", f"report:{report['id']}"),
        ("admin:root", "unsilence", bob_on_a.uri),
        ("admin:root", "domain_block:suspend", b.domain),
        ("admin:root", "domain_unblock", b.domain),
        ("admin:root", "suspend", "alice"),
        ("admin:root", "unsuspend", "alice"),
    ]


async def test_an_operators_delete_federates_as_delete_person(two: tuple[Node, Node]) -> None:
    a, b = two
    await _mutual(a, b)
    alice = await a.account("alice")
    await a.federation.moderate(
        lambda conn, now: moderation.delete_local_account(conn, a.urls, alice, "cli", now, "spam")
    )
    assert (await a.account("alice")).is_deleted

    async def alice_on_b() -> bool:
        found = await remote(b, a.url("/users/alice"))
        return found is not None and found.is_deleted

    assert await eventually(alice_on_b)
    assert ("cli", "delete", "alice") in await _actions(a)


async def test_in_allowlist_mode_only_the_listed_domains_federate(nodes: NodeFactory) -> None:
    friend, stranger = await nodes.start(), await nodes.start()
    a = await nodes.start(federation__mode="allowlist", federation__allowed_domains=[friend.domain])
    await a.create_user("alice")
    await friend.create_user("fran")
    await stranger.create_user("sam")
    assert (await known(a, friend, "fran")).username == "fran"
    with pytest.raises(FetchError, match="does not federate"):
        await a.federation.fetcher.get_object(stranger.url("/users/sam"))

    alice_for_friend = await known(friend, a, "alice")
    alice_for_stranger = await known(stranger, a, "alice")
    welcome = await post(friend, "fran", "hi alice", mentions=[alice_for_friend])
    unwelcome = await post(stranger, "sam", "hi alice", mentions=[alice_for_stranger])
    await eventually(lambda: stored(a, welcome.uri))
    await eventually(lambda: _delivered_any(stranger), _done)
    assert await stored(a, unwelcome.uri) is None


async def test_a_suspended_local_users_posts_are_served_to_nobody_until_unsuspended(
    node: Node,
) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    alice_id = (await node.account("alice")).id
    await bob.post(f"/api/v1/accounts/{alice_id}/follow")
    posted = (await alice.post("/api/v1/statuses", status="soon gone #kith")).body
    assert [s["id"] for s in (await bob.get("/api/v1/timelines/home")).body] == [posted["id"]]
    account = await node.account("alice")
    await node.federation.moderate(
        lambda conn, now: moderation.suspend_account(conn, account, "cli", now, "spam")
    )
    anonymous = await client_for(node, "carol")
    anonymous.token = None
    for client in (bob, anonymous):
        assert (await client.get(f"/api/v1/statuses/{posted['id']}")).status == 404
        assert (await client.get("/api/v1/timelines/public")).body == []
        assert (await client.get("/api/v1/timelines/tag/kith")).body == []
        assert (await client.get(f"/api/v1/accounts/{alice_id}/statuses")).body == []
    assert (await bob.get("/api/v1/timelines/home")).body == []
    note = await anonymous.request(
        "GET", f"/objects/{posted['id']}", headers={"Accept": "application/activity+json"}
    )
    assert note.status == 404
    assert (await anonymous.request("GET", "/@alice")).status == 410
    assert (await anonymous.request("GET", f"/@alice/{posted['id']}")).status == 404
    # Kept for an unsuspend: served again afterwards.
    await node.federation.moderate(
        lambda conn, now: moderation.unsuspend_account(conn, account, "cli", now)
    )
    assert (await anonymous.get(f"/api/v1/statuses/{posted['id']}")).status == 200
    assert [s["id"] for s in (await anonymous.get("/api/v1/timelines/public")).body] == [
        posted["id"]
    ]


async def test_the_admin_lists_are_paged_newest_first_with_link_headers(
    two: tuple[Node, Node],
) -> None:
    a, _ = two
    root = await admin_client_for(a)
    for n in range(5):
        await a.create_user(f"user{n}")
    everyone = (await root.get("/api/v1/admin/accounts")).body
    names = [x["username"] for x in everyone]
    assert names[:5] == [f"user{n}" for n in range(4, -1, -1)]  # the newest first
    ids = [int(x["id"]) for x in everyone]
    assert ids == sorted(ids, reverse=True)

    seen, path, params = [], "/api/v1/admin/accounts", {"limit": "2"}
    while True:
        page = await root.get(path, **params)
        assert page.status == 200, page.body
        if not page.body:
            break
        assert len(page.body) <= 2
        seen += [x["username"] for x in page.body]
        following = re.search(r'<([^>]+)>; rel="next"', page.headers["Link"])
        assert following is not None
        path, params = following.group(1).removeprefix(a.base_url), {}
    assert seen == names
    newer = await root.get("/api/v1/admin/accounts", min_id=everyone[2]["id"], limit="1")
    assert [x["username"] for x in newer.body] == [everyone[1]["username"]]
    assert len((await root.get("/api/v1/admin/accounts", limit="500")).body) == len(names)
