"""Bearer tokens on the client API: verify_credentials and every way a token is refused."""

from __future__ import annotations

import re

import pytest

from tests.harness import Node
from tests.integration.support import mark_deleted, revoke_all_tokens, set_note

VERIFY = "/api/v1/accounts/verify_credentials"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def verify(node: Node, headers: dict[str, str]) -> tuple[int, dict[str, str], dict]:
    async with node.http.get(VERIFY, headers=headers) as response:
        return response.status, dict(response.headers), await response.json()


@pytest.fixture
async def alice_node(node: Node) -> Node:
    await node.create_user("alice", display_name="Alice A.")
    return node


async def test_verify_credentials_returns_mastodon_account_of_token_owner(
    alice_node: Node,
) -> None:
    node = alice_node
    await node.create_user("bob")
    await set_note(node, "alice", "Hello <b>world</b> & friends")
    token = await node.create_token("alice", scopes="read")
    status, headers, account = await verify(node, bearer(token))
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert isinstance(account["id"], str)
    assert account["id"].isdigit()
    assert account["id"] == str(node.users["alice"].id)
    assert account["username"] == "alice"
    assert account["acct"] == "alice"
    assert account["display_name"] == "Alice A."
    assert account["locked"] is False
    assert account["bot"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", account["created_at"])
    assert account["created_at"].startswith(node.clock().date().isoformat())
    assert "<b>" not in account["note"]
    assert "&lt;b&gt;" in account["note"]
    assert account["url"] == node.url("/@alice")
    assert account["uri"] == node.url("/users/alice")
    for image in ("avatar", "avatar_static", "header", "header_static"):
        assert account[image].startswith(node.base_url)
    for count in ("followers_count", "following_count", "statuses_count"):
        assert account[count] == 0
    assert account["emojis"] == []
    assert account["fields"] == []
    assert account["source"]["note"] == "Hello <b>world</b> & friends"
    assert account["source"]["privacy"] in ("public", "unlisted", "private", "direct")


async def test_verify_credentials_avatar_url_is_served(alice_node: Node) -> None:
    token = await alice_node.create_token("alice", scopes="read")
    _, _, account = await verify(alice_node, bearer(token))
    async with alice_node.http.get(account["avatar"]) as response:
        assert response.status == 200
        assert response.content_type.startswith("image/")


async def test_verify_credentials_of_bot_says_bot(node: Node) -> None:
    await node.create_user("newsbot", is_bot=True)
    token = await node.create_token("newsbot", scopes="read")
    status, _, account = await verify(node, bearer(token))
    assert status == 200
    assert account["bot"] is True


async def assert_invalid_token(node: Node, headers: dict[str, str]) -> None:
    status, response_headers, body = await verify(node, headers)
    assert status == 401
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert body["error"]


async def test_verify_credentials_without_token_is_401(alice_node: Node) -> None:
    await assert_invalid_token(alice_node, {})


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-real-token",
        "Bearer ",
        "Bearer",
        "Basic YWxpY2U6cGFzc3dvcmQ=",
        "Bearer " + "x" * 600,
        "bearer\tnot-a-token",
    ],
    ids=["garbage", "empty", "scheme_only", "basic", "too_long", "tab_separated"],
)
async def test_verify_credentials_with_garbage_token_is_401(
    alice_node: Node, authorization: str
) -> None:
    await alice_node.create_token("alice")
    await assert_invalid_token(alice_node, {"Authorization": authorization})


async def test_verify_credentials_with_revoked_token_is_401(alice_node: Node) -> None:
    token = await alice_node.create_token("alice")
    status, _, _ = await verify(alice_node, bearer(token))
    assert status == 200
    await revoke_all_tokens(alice_node)
    await assert_invalid_token(alice_node, bearer(token))


async def test_verify_credentials_without_read_accounts_scope_is_403(alice_node: Node) -> None:
    token = await alice_node.create_token("alice", scopes="write follow push")
    status, _, body = await verify(alice_node, bearer(token))
    assert status == 403
    assert body["error"]


@pytest.mark.parametrize("scopes", ["profile", "read", "read:accounts", "read write follow push"])
async def test_verify_credentials_accepts_any_scope_covering_the_account(
    alice_node: Node, scopes: str
) -> None:
    token = await alice_node.create_token("alice", scopes=scopes)
    status, _, account = await verify(alice_node, bearer(token))
    assert status == 200
    assert account["username"] == "alice"


async def test_verify_credentials_scheme_is_case_insensitive(alice_node: Node) -> None:
    token = await alice_node.create_token("alice", scopes="read")
    status, _, _ = await verify(alice_node, {"Authorization": f"bearer {token}"})
    assert status == 200


async def test_verify_credentials_with_token_of_deleted_account_is_401(
    alice_node: Node,
) -> None:
    token = await alice_node.create_token("alice")
    await mark_deleted(alice_node, "alice")
    await assert_invalid_token(alice_node, bearer(token))


async def test_token_of_one_user_never_answers_for_another(alice_node: Node) -> None:
    await alice_node.create_user("bob")
    bob_token = await alice_node.create_token("bob", scopes="read")
    _, _, account = await verify(alice_node, bearer(bob_token))
    assert account["username"] == "bob"
