"""Signing up with Mastodon.py, unmodified: its create_account against a live node."""

from __future__ import annotations

import asyncio

import pytest
from mastodon import Mastodon, MastodonAPIError

from tests.clients.mastodon_client import SCOPES, Client
from tests.harness import Node, NodeFactory


async def _app(node: Node) -> Client:
    client_id, secret = await asyncio.to_thread(
        Mastodon.create_app, "kith-sign-up", api_base_url=node.base_url, scopes=SCOPES
    )
    api = Mastodon(
        client_id=client_id,
        client_secret=secret,
        api_base_url=node.base_url,
        version_check_mode="none",
    )
    return Client(api)


async def test_create_account_signs_up_and_is_signed_in(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="open")
    client = await _app(node)
    token = await client.call(
        "create_account", "dora", "correct horse battery", "dora@example.com", agreement=True
    )
    assert token
    me = await client.call("account_verify_credentials")
    assert me["username"] == "dora"
    posted = await client.call("status_post", "first post")
    assert posted["account"]["username"] == "dora"


async def test_create_account_reads_the_detailed_errors(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="open")
    client = await _app(node)
    token, error = await client.call(
        "create_account",
        "admin",
        "short",
        "nope",
        agreement=False,
        return_detailed_error=True,
    )
    assert token is None
    assert error["details"]["username"][0]["error"] == "ERR_RESERVED"
    assert error["details"]["password"][0]["error"] == "ERR_TOO_SHORT"
    assert error["details"]["email"][0]["error"] == "ERR_INVALID"
    assert error["details"]["agreement"][0]["error"] == "ERR_ACCEPTED"


async def test_a_pending_sign_up_is_told_so_by_mastodon_py(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__registrations="approval")
    client = await _app(node)
    await client.call(
        "create_account",
        "erin",
        "correct horse battery",
        "erin@example.com",
        agreement=True,
        reason="I would like to join",
    )
    with pytest.raises(MastodonAPIError, match="pending approval"):
        await client.call("account_verify_credentials")
