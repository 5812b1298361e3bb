"""Signing up from apps (POST /api/v1/accounts) in every registration mode, over real HTTP.

Mastodon's contract: an app's own token with write:accounts; a Token entity back; 422 with
`details` per field; 403 when sign-ups are closed (or invite-only without a code); a pending
account's token answers 403 "Your login is currently pending approval" until approved.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from server.identity.invites import revoke_invite
from server.moderation import audit_log
from server.storage.tables import accounts, sign_ups
from tests.api.client import ApiClient, client_for
from tests.api.test_openapi import validate
from tests.harness import AS2, Node, NodeFactory
from tests.integration.registration_support import (
    PASSWORD,
    app_client,
    invite_uses,
    local_account_count,
    new_invite,
    sign_up,
)

PENDING = "Your login is currently pending approval"


async def _password_grant(node: Node, username: str, password: str) -> tuple[int, dict]:
    app = await ApiClient(node, None).post(
        "/api/v1/apps", client_name="t", redirect_uris="urn:ietf:wg:oauth:2.0:oob"
    )
    form = {
        "grant_type": "password",
        "client_id": app.body["client_id"],
        "client_secret": app.body["client_secret"],
        "username": username,
        "password": password,
        "scope": "read",
    }
    async with node.http.post("/oauth/token", data=form) as response:
        return response.status, await response.json()


async def _admin(node: Node) -> ApiClient:
    await node.create_user("boss", is_admin=True)
    return ApiClient(node, await node.create_token("boss", "read write admin:read admin:write"))


async def test_open_mode_signs_up_and_answers_a_token_that_works(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="open")
    app = await app_client(node)
    answer = await sign_up(app, "Alice", email="  Alice@Example.COM ", reason="hi")
    assert answer.status == 200, answer.body
    validate("POST", "/api/v1/accounts", answer.body)
    assert answer.body["token_type"] == "Bearer"
    assert answer.body["scope"] == "read write follow push"
    assert isinstance(answer.body["created_at"], int)
    me = await ApiClient(node, answer.body["access_token"]).get(
        "/api/v1/accounts/verify_credentials"
    )
    assert me.status == 200
    assert me.body["username"] == "Alice"
    account = await node.account("alice")
    assert account.email == "alice@example.com"
    assert account.approved
    assert (await _password_grant(node, "alice", PASSWORD))[0] == 200
    async with node.http.get("/users/Alice", headers=AS2) as response:
        assert response.status == 200


async def test_closed_mode_refuses_every_sign_up_even_with_an_invite(node: Node) -> None:
    app = await app_client(node)
    invite = await new_invite(node)
    for fields in ({}, {"invite_code": invite.code}):
        answer = await sign_up(app, "alice", **fields)
        assert answer.status == 403
        assert answer.body["error"] == "This action is not allowed"
        assert "closed" in answer.body["error_description"]
    assert await local_account_count(node) == 0
    assert await invite_uses(node, invite) == 0


async def test_only_an_apps_own_token_with_write_accounts_may_sign_up(
    nodes: NodeFactory,
) -> None:
    node = await nodes.start(instance__registrations="open")
    assert (await sign_up(ApiClient(node, None), "a1")).status == 401
    user = await client_for(node, "bob")
    answer = await sign_up(user, "a2")
    assert answer.status == 403
    assert "client credentials" in answer.body["error"]
    read_only = await app_client(node, scopes="read")
    assert (await sign_up(read_only, "a3")).status == 403
    assert await local_account_count(node) == 1  # bob


async def test_bad_input_is_422_with_every_problem_by_field_and_changes_nothing(
    nodes: NodeFactory,
) -> None:
    node = await nodes.start(instance__registrations="open")
    app = await app_client(node)
    answer = await sign_up(
        app, "bad name!", email="not-an-address", password="short", agreement=False, locale="!!"
    )
    assert answer.status == 422
    details = answer.body["details"]
    assert {field: [e["error"] for e in errors] for field, errors in details.items()} == {
        "username": ["ERR_INVALID"],
        "email": ["ERR_INVALID"],
        "password": ["ERR_TOO_SHORT"],
        "agreement": ["ERR_ACCEPTED"],
        "locale": ["ERR_INCLUSION"],
    }
    assert answer.body["error"].startswith("Validation failed: Username ")
    assert all(e["description"] for errors in details.values() for e in errors)
    for fields, field, code in (
        ({"username": "admin"}, "username", "ERR_RESERVED"),
        ({"username": "x" * 31}, "username", "ERR_TOO_LONG"),
        ({"username": ""}, "username", "ERR_BLANK"),
        ({"password": ""}, "password", "ERR_BLANK"),
        ({"password": "p" * 1025}, "password", "ERR_TOO_LONG"),
        ({"email": "a@" + "b" * 260}, "email", "ERR_TOO_LONG"),
        ({"reason": "r" * 421}, "reason", "ERR_TOO_LONG"),
        ({"invite_code": "no-such-code"}, "invite_code", "ERR_INVALID"),
    ):
        answer = await sign_up(app, **{"username": "carol", **fields})
        assert answer.status == 422, fields
        assert [e["error"] for e in answer.body["details"][field]] == [code], fields
    for body in (b"{not json", b"[1, 2]"):
        async with node.http.post(
            "/api/v1/accounts",
            data=body,
            headers={"Authorization": f"Bearer {app.token}", "Content-Type": "application/json"},
        ) as response:
            assert response.status == 422
            assert (await response.json())["error"]
    assert (await sign_up(app, "carol", email=["a@b.c", "d@e.f"])).status == 422
    assert await local_account_count(node) == 0


async def test_taken_names_and_addresses_are_refused_ignoring_case(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="open")
    app = await app_client(node)
    assert (await sign_up(app, "alice", email="alice@example.com")).status == 200
    answer = await sign_up(app, "ALICE", email="Alice@Example.com")
    assert answer.status == 422
    assert answer.body["details"]["username"][0]["error"] == "ERR_TAKEN"
    assert answer.body["details"]["email"][0]["error"] == "ERR_TAKEN"
    await node.create_user("gone")
    async with node.db.transaction() as conn:
        await conn.execute(
            accounts.update().where(accounts.c.username == "gone").values(deleted_at=node.clock())
        )
    answer = await sign_up(app, "Gone")
    assert answer.body["details"]["username"][0]["error"] == "ERR_TAKEN"
    assert await local_account_count(node) == 2


async def test_email_is_optional_unless_required(nodes: NodeFactory) -> None:
    optional = await nodes.start(instance__registrations="open")
    assert (await sign_up(await app_client(optional), "alice", email=None)).status == 200
    assert (await sign_up(await app_client(optional), "bob", email="")).status == 200
    assert (await optional.account("bob")).email is None
    required = await nodes.start(instance__registrations="open", instance__require_email=True)
    answer = await sign_up(await app_client(required), "alice", email="")
    assert answer.status == 422
    assert answer.body["details"]["email"][0]["error"] == "ERR_BLANK"


async def test_invite_mode_needs_a_valid_invite_and_records_which(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="invite")
    app = await app_client(node)
    refused = await sign_up(app, "alice")
    assert refused.status == 403
    assert "invite code" in refused.body["error_description"]
    once = await new_invite(node, max_uses=1)
    admitted = await sign_up(app, "alice", invite_code=once.code)
    assert admitted.status == 200, admitted.body
    token = ApiClient(node, admitted.body["access_token"])
    assert (await token.get("/api/v1/accounts/verify_credentials")).status == 200
    assert await invite_uses(node, once) == 1
    async with node.db.read() as conn:
        row = (await conn.execute(select(sign_ups).where(sign_ups.c.invite_id == once.id))).one()
    assert row.account_id == (await node.account("alice")).id
    assert row.ip == "127.0.0.1"

    used_up = await sign_up(app, "bob", invite_code=once.code)
    expiring = await new_invite(node, expires_in=timedelta(days=1))
    node.clock.advance(days=1, seconds=1)
    expired = await sign_up(app, "bob", invite_code=expiring.code)
    revoked_invite = await new_invite(node)
    async with node.db.transaction() as conn:
        await revoke_invite(conn, revoked_invite.code, node.clock())
    revoked = await sign_up(app, "bob", invite_code=revoked_invite.code)
    for answer in (used_up, expired, revoked):
        assert answer.status == 422
        assert answer.body["details"]["invite_code"][0]["error"] == "ERR_INVALID"
    assert await invite_uses(node, once) == 1
    assert await invite_uses(node, expiring) == 0
    assert await local_account_count(node) == 1


async def test_an_invite_can_be_used_up_to_its_limit(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="invite")
    app = await app_client(node)
    twice = await new_invite(node, max_uses=2)
    answers = [await sign_up(app, f"user{i}", invite_code=twice.code) for i in range(3)]
    assert [a.status for a in answers] == [200, 200, 422]
    assert await invite_uses(node, twice) == 2


async def test_approval_mode_holds_the_account_until_an_admin_approves(
    nodes: NodeFactory,
) -> None:
    node = await nodes.start(instance__registrations="approval")
    admin = await _admin(node)
    app = await app_client(node)
    answer = await sign_up(app, "alice", reason="I knit")
    assert answer.status == 200, answer.body
    pending = ApiClient(node, answer.body["access_token"])
    refused = await pending.get("/api/v1/accounts/verify_credentials")
    assert refused.status == 403
    assert refused.body["error"] == PENDING
    assert (await pending.post("/api/v1/statuses", status="hello")).status == 403
    status, body = await _password_grant(node, "alice", PASSWORD)
    assert (status, body["error"]) == (403, PENDING)
    account = await node.account("alice")
    assert account.is_pending
    # Nobody outside sees a sign-up that may yet be turned away.
    async with node.http.get("/users/alice", headers=AS2) as response:
        assert response.status == 404
    webfinger = f"/.well-known/webfinger?resource=acct:alice@{node.domain}"
    async with node.http.get(webfinger) as response:
        assert response.status == 404
    assert (await admin.get(f"/api/v1/accounts/{account.id}")).status == 404
    assert (await admin.get("/api/v1/accounts/lookup", acct="alice")).status == 404
    assert (await admin.get("/api/v1/accounts/search", q="ali")).body == []

    listed = await admin.get("/api/v1/admin/accounts", pending="true")
    validate("GET", "/api/v1/admin/accounts", listed.body)
    assert [a["username"] for a in listed.body] == ["alice"]
    entry = listed.body[0]
    assert entry["approved"] is False
    assert entry["invite_request"] == "I knit"
    assert entry["email"] == "alice@example.com"
    assert entry["ip"] == "127.0.0.1"
    assert entry["locale"] == "en"
    assert entry["created_by_application_id"] is not None
    v2 = await admin.get("/api/v2/admin/accounts", origin="local", status="pending")
    assert [a["username"] for a in v2.body] == ["alice"]
    active = await admin.get("/api/v2/admin/accounts", status="active")
    assert [a["username"] for a in active.body] == ["boss"]

    approved = await admin.post(f"/api/v1/admin/accounts/{account.id}/approve")
    assert approved.status == 200
    assert (await admin.get("/api/v1/accounts/lookup", acct="alice")).status == 200
    validate("POST", "/api/v1/admin/accounts/{id}/approve", approved.body)
    assert approved.body["approved"] is True
    assert (await pending.get("/api/v1/accounts/verify_credentials")).status == 200
    assert (await admin.get("/api/v2/admin/accounts", status="pending")).body == []
    again = await admin.post(f"/api/v1/admin/accounts/{account.id}/approve")
    assert again.status == 403
    assert (await admin.post(f"/api/v1/admin/accounts/{account.id}/reject")).status == 403
    async with node.db.read() as conn:
        log = await audit_log(conn)
    assert [(e.actor, e.action, e.target) for e in log] == [("admin:boss", "approve", "alice")]


async def test_rejecting_a_sign_up_deletes_it_and_frees_the_name(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="approval")
    admin = await _admin(node)
    app = await app_client(node)
    answer = await sign_up(app, "mallory")
    token = ApiClient(node, answer.body["access_token"])
    account = await node.account("mallory")
    rejected = await admin.post(f"/api/v1/admin/accounts/{account.id}/reject")
    assert rejected.status == 200
    assert rejected.body["username"] == "mallory"
    assert (await token.get("/api/v1/accounts/verify_credentials")).status == 401
    assert (await admin.get("/api/v1/admin/accounts", pending="true")).body == []
    assert (await admin.post(f"/api/v1/admin/accounts/{account.id}/reject")).status == 404
    async with node.db.read() as conn:
        log = await audit_log(conn)
    assert [(e.action, e.target) for e in log] == [("reject", "mallory")]
    assert (await sign_up(app, "mallory")).status == 200  # the name is free again


async def test_a_non_admin_cannot_approve(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="approval")
    await sign_up(await app_client(node), "alice")
    someone = await client_for(node, "bob", "read write admin:read admin:write")
    account = await node.account("alice")
    assert (await someone.post(f"/api/v1/admin/accounts/{account.id}/approve")).status == 403
    assert (await node.account("alice")).is_pending


async def test_an_invite_skips_approval_and_a_reason_may_be_required(
    nodes: NodeFactory,
) -> None:
    node = await nodes.start(instance__registrations="approval", instance__require_reason=True)
    app = await app_client(node)
    answer = await sign_up(app, "alice")
    assert answer.status == 422
    assert answer.body["details"]["reason"][0]["error"] == "ERR_BLANK"
    invite = await new_invite(node)
    invited = await sign_up(app, "alice", invite_code=invite.code)
    assert invited.status == 200
    me = await ApiClient(node, invited.body["access_token"]).get(
        "/api/v1/accounts/verify_credentials"
    )
    assert me.status == 200
    assert (await sign_up(app, "bob", reason="please")).status == 200
    assert (await node.account("bob")).is_pending


async def test_the_instance_tells_apps_how_registration_works(nodes: NodeFactory) -> None:
    expected = {
        "open": (True, False, True),
        "approval": (True, True, True),
        "invite": (False, False, True),
        "closed": (False, False, False),
    }
    for mode, (enabled, approval, invites) in expected.items():
        node = await nodes.start(
            instance__registrations=mode, instance__registrations_message="Ask at the café"
        )
        anonymous = ApiClient(node, None)
        v2 = (await anonymous.get("/api/v2/instance")).body["registrations"]
        assert (v2["enabled"], v2["approval_required"]) == (enabled, approval), mode
        assert v2["message"] == (None if enabled else "Ask at the café"), mode
        v1 = (await anonymous.get("/api/v1/instance")).body
        assert (v1["registrations"], v1["approval_required"], v1["invites_enabled"]) == (
            enabled,
            approval,
            invites,
        ), mode


async def test_sign_ups_are_rate_limited_per_address(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="open", api__sign_up_attempts_per_window=2)
    app = await app_client(node)
    assert (await sign_up(app, "a1")).status == 200
    assert (await sign_up(app, "bad name")).status == 422  # failures count too
    limited = await sign_up(app, "a3")
    assert limited.status == 429
    assert "Retry-After" in limited.headers
    node.clock.advance(seconds=301)
    assert (await sign_up(app, "a3")).status == 200


async def test_an_invite_link_shows_the_code_while_it_is_usable(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="invite")
    invite = await new_invite(node, max_uses=1)
    async with node.http.get(f"/invite/{invite.code}") as response:
        assert response.status == 200
        assert invite.code in await response.text()
    await sign_up(await app_client(node), "alice", invite_code=invite.code)
    async with node.http.get(f"/invite/{invite.code}") as response:
        assert response.status == 410
        assert "used up" in await response.text()
    async with node.http.get("/invite/nope") as response:
        assert response.status == 404
