"""OAuth with an unmodified client library (Mastodon.py) and by hand where it has no helper."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
from mastodon import Mastodon
from mastodon.errors import MastodonAPIError, MastodonIllegalArgumentError

from tests.harness import Node, NodeFactory

PASSWORD = "correct horse battery staple"
CALLBACK = "http://127.0.0.1:9/callback"
SCOPES = ["read", "write", "follow"]
# Test nodes serve plain http on loopback; Mastodon.py refuses that unless told.


async def _app(node: Node, redirect: str = CALLBACK) -> tuple[str, str]:
    return await asyncio.to_thread(
        Mastodon.create_app,
        "kith-tests",
        api_base_url=node.base_url,
        scopes=SCOPES,
        redirect_uris=redirect,
    )


def _client(node: Node, client_id: str, secret: str, token: str | None = None) -> Mastodon:
    return Mastodon(
        client_id=client_id,
        client_secret=secret,
        access_token=token,
        api_base_url=node.base_url,
        version_check_mode="none",
    )


# Browsers keep cookies set by IP-address hosts; aiohttp only does with unsafe=True.
async def _consent(node: Node, authorize_url: str, password: str = PASSWORD) -> str:
    """Drive the consent page like a browser; returns where the server redirected."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(authorize_url) as page:
            assert page.status == 200
            html = await page.text()
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
        fields.update(username="alice", password=password, decision="approve")
        async with browser.post(
            node.url("/oauth/authorize"), data=fields, allow_redirects=False
        ) as response:
            assert response.status == 302, await response.text()
            return response.headers["Location"]


async def test_password_grant_signs_in_and_verifies_credentials(node: Node) -> None:
    await node.create_user("alice", password=PASSWORD)
    client_id, secret = await _app(node)
    client = _client(node, client_id, secret)
    token = await asyncio.to_thread(
        client.log_in, "alice", PASSWORD, scopes=SCOPES, allow_http=True
    )
    assert token
    me = await asyncio.to_thread(client.account_verify_credentials)
    assert me["username"] == "alice"
    assert me["acct"] == "alice"


async def test_authorization_code_flow_through_the_consent_page(node: Node) -> None:
    await node.create_user("alice", password=PASSWORD)
    client_id, secret = await _app(node)
    client = _client(node, client_id, secret)
    url = await asyncio.to_thread(
        client.auth_request_url, redirect_uris=CALLBACK, scopes=SCOPES, state="xyz", allow_http=True
    )
    location = await _consent(node, url)
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(CALLBACK)
    assert query["state"] == ["xyz"]
    await asyncio.to_thread(
        client.log_in, code=query["code"][0], redirect_uri=CALLBACK, scopes=SCOPES, allow_http=True
    )
    me = await asyncio.to_thread(client.account_verify_credentials)
    assert me["username"] == "alice"
    with pytest.raises(MastodonIllegalArgumentError):  # a code works once
        await asyncio.to_thread(
            client.log_in,
            code=query["code"][0],
            redirect_uri=CALLBACK,
            scopes=SCOPES,
            allow_http=True,
        )


async def test_pkce_requires_the_matching_verifier(node: Node) -> None:
    await node.create_user("alice", password=PASSWORD)
    client_id, secret = await _app(node)
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    authorize = node.url(
        "/oauth/authorize?response_type=code&scope=read"
        f"&client_id={client_id}&redirect_uri={CALLBACK}"
        f"&code_challenge={challenge.rstrip(b'=').decode()}&code_challenge_method=S256"
    )
    code = parse_qs(urlsplit(await _consent(node, authorize)).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "client_id": client_id,
        "client_secret": secret,
    }
    async with node.http.post("/oauth/token", data={**form, "code_verifier": "w" * 64}) as wrong:
        assert wrong.status == 400
        assert (await wrong.json())["error"] == "invalid_grant"
    async with node.http.post("/oauth/token", data={**form, "code_verifier": verifier}) as right:
        assert right.status == 200
        assert (await right.json())["token_type"] == "Bearer"


async def test_the_out_of_band_redirect_shows_the_code(node: Node) -> None:
    await node.create_user("alice", password=PASSWORD)
    oob = "urn:ietf:wg:oauth:2.0:oob"
    client_id, _ = await _app(node, oob)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        url = node.url(
            f"/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={oob}"
        )
        async with browser.get(url) as page:
            html = await page.text()
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
        fields.update(username="alice", password=PASSWORD, decision="approve")
        async with browser.post(node.url("/oauth/authorize"), data=fields) as response:
            assert response.status == 200
            assert re.search(
                r'<code class="code" id="code">[\w-]{20,}</code>', await response.text()
            )


async def test_refresh_rotates_and_revoke_ends_a_token(node: Node) -> None:
    await node.create_user("alice", password=PASSWORD)
    client_id, secret = await _app(node)
    client = {"client_id": client_id, "client_secret": secret}
    login = {"grant_type": "password", "username": "alice", "password": PASSWORD, "scope": "read"}
    async with node.http.post("/oauth/token", json={**login, **client}) as response:
        first = await response.json()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], **client}
    async with node.http.post("/oauth/token", data=refresh) as response:
        second = await response.json()
    assert second["access_token"] != first["access_token"]
    async with node.http.post("/oauth/token", data=refresh) as response:
        assert response.status == 400  # the old refresh token was rotated away
    me = "/api/v1/accounts/verify_credentials"
    auth = {"Authorization": f"Bearer {second['access_token']}"}
    async with node.http.get(me, headers=auth) as response:
        assert response.status == 200
    async with node.http.post("/oauth/revoke", data={"token": second["access_token"], **client}):
        pass
    async with node.http.get(me, headers=auth) as response:
        assert response.status == 401


async def test_wrong_passwords_are_refused_then_rate_limited(nodes: NodeFactory) -> None:
    node = await nodes.start(api__login_attempts_per_window=3)
    await node.create_user("alice", password=PASSWORD)
    client_id, secret = await _app(node)
    client = _client(node, client_id, secret)
    for _ in range(3):
        with pytest.raises(MastodonIllegalArgumentError):
            await asyncio.to_thread(
                client.log_in, "alice", "wrong password", scopes=SCOPES, allow_http=True
            )
    with pytest.raises((MastodonAPIError, MastodonIllegalArgumentError)):
        await asyncio.to_thread(client.log_in, "alice", PASSWORD, scopes=SCOPES, allow_http=True)


async def test_the_password_grant_can_be_switched_off(nodes: NodeFactory) -> None:
    node = await nodes.start(api__password_grant=False)
    await node.create_user("alice", password=PASSWORD)
    client_id, secret = await _app(node)
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    async with node.http.post(
        "/oauth/token", data={**form, "client_id": client_id, "client_secret": secret}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "unsupported_grant_type"


async def test_an_application_token_speaks_for_the_app_not_a_user(node: Node) -> None:
    client_id, secret = await _app(node)
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    async with node.http.post("/oauth/token", data=form) as response:
        token = (await response.json())["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    async with node.http.get("/api/v1/apps/verify_credentials", headers=auth) as response:
        assert (await response.json())["name"] == "kith-tests"
    async with node.http.get("/api/v1/accounts/verify_credentials", headers=auth) as response:
        assert response.status == 422


async def test_bad_clients_and_requests_get_oauth_errors(node: Node) -> None:
    client_id, _ = await _app(node)
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "nope"}
    async with node.http.post("/oauth/token", data=form) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "invalid_client"
    async with node.http.get(
        f"/oauth/authorize?client_id={client_id}&redirect_uri=https://evil.example/"
    ) as response:
        assert response.status == 400
    async with node.http.post("/api/v1/apps", data={"client_name": "x"}) as response:
        assert response.status == 422
    async with node.http.get("/.well-known/oauth-authorization-server") as response:
        metadata = await response.json()
    assert metadata["token_endpoint"] == node.url("/oauth/token")
    assert "S256" in metadata["code_challenge_methods_supported"]


async def test_a_c2s_client_named_by_its_url_signs_in_with_pkce(node: Node) -> None:
    await node.create_user("alice", password=PASSWORD)
    client_id = "https://client.example/app.json"
    callback = "https://client.example/callback"
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": callback,
        "scope": "read write",
        "code_challenge": challenge.rstrip("="),
        "code_challenge_method": "S256",
    }
    url = node.url("/oauth/authorize?") + "&".join(f"{k}={quote(v)}" for k, v in query.items())
    location = await _consent(node, url)
    assert location.startswith(callback)
    code = parse_qs(urlsplit(location).query)["code"][0]
    async with node.http.post(
        node.url("/oauth/token"),
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": callback,
            "code_verifier": verifier,
        },
    ) as response:
        assert response.status == 200, await response.text()
        token = (await response.json())["access_token"]
    async with node.http.get(
        node.url("/api/v1/accounts/verify_credentials"),
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert (await response.json())["username"] == "alice"

    for changed in ({"redirect_uri": "https://evil.example/callback"}, {"code_challenge": ""}):
        bad = {**query, **changed}
        async with node.http.get(node.url("/oauth/authorize"), params=bad) as response:
            assert response.status == 400, changed
