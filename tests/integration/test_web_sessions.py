"""Web sessions outside a browser: the streaming WebSocket takes the session cookie only from
the node's own origin (cross-site WebSocket hijacking), and signing out ends it."""

from __future__ import annotations

import json

import aiohttp
import pytest

from server.identity.tokens import issue_token
from server.web.sessions import Cookies, open_session, web_client
from tests.harness import Node


async def _session(node: Node, username: str) -> str:
    account = await node.create_user(username)
    async with node.db.transaction() as conn:
        client = await web_client(conn, node.urls, node.clock())
        issued = await issue_token(
            conn, account.id, client.scopes, client.name, node.clock(), application_id=client.id
        )
        return await open_session(conn, issued.access_token, node.clock())


async def test_stream_takes_the_session_cookie_from_our_origin_only(node: Node) -> None:
    session_id = await _session(node, "alice")
    cookie = {"Cookie": f"{Cookies.of(node.urls).session}={session_id}"}
    url = node.url("/api/v1/streaming?stream=user")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={**cookie, "Origin": "http://evil.example"})
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(url, headers=cookie)  # no Origin: not a page of ours
        async with http.ws_connect(url, headers={**cookie, "Origin": node.base_url}) as socket:
            alice = await node.create_token("alice")
            async with node.http.post(
                "/api/v1/statuses",
                json={"status": "heard live"},
                headers={"Authorization": f"Bearer {alice}"},
            ) as response:
                assert response.status == 200
            frame = json.loads((await socket.receive(timeout=10)).data)
    assert frame["event"] == "update"
    assert "heard live" in json.loads(frame["payload"])["content"]


async def test_an_unknown_or_expired_session_is_no_one(node: Node) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                node.url("/api/v1/streaming?stream=user"),
                headers={"Cookie": "kith_session=made-up", "Origin": node.base_url},
            )
    assert refused.value.status == 401
    session_id = await _session(node, "bob")
    node.clock.advance(days=31)
    async with node.http.get("/", headers={"Cookie": f"kith_session={session_id}"}) as page:
        assert "Sign in" in await page.text()
