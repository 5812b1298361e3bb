"""Remote fetches over real HTTP on loopback; DNS answers for remote names are simulated."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from federation.fetch import (
    Fetcher,
    FetchError,
    FetchPolicy,
    ForbiddenAddress,
    check_url,
    create_session,
    is_forbidden_address,
    is_image_media_type,
)

AS2 = "application/activity+json"


class FakeDns(AbstractResolver):
    """What a remote DNS server would answer for names under our test's control."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class Peer:
    """A tiny remote server whose routes each test fills in."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.routes: dict[str, web.RequestHandler] = {}
        self.requests: list[web.Request] = []
        self.app.router.add_get("/{tail:.*}", self._dispatch)
        self.base = ""

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404)
        return await handler(request)

    def document(self, path: str, body: object, content_type: str = AS2) -> None:
        async def handler(_request: web.Request) -> web.Response:
            return web.Response(body=json.dumps(body).encode(), content_type=content_type)

        self.routes[path] = handler


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    peer = Peer()
    runner = web.AppRunner(peer.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peer.base = f"http://127.0.0.1:{port}"
    yield peer
    await runner.cleanup()


def _fetcher(policy: FetchPolicy, resolver: AbstractResolver | None = None, signer=None) -> Fetcher:
    return Fetcher(create_session(policy, resolver), policy, signer)


LOOPBACK_ALLOWED = FetchPolicy(allow_private_addresses=True, allow_http=True)
PUBLIC_ONLY = FetchPolicy(allow_private_addresses=False, allow_http=True)


async def test_fetches_an_as2_document_whose_id_is_its_url(peer: Peer) -> None:
    peer.document("/users/bob", {"id": f"{peer.base}/users/bob", "type": "Person"})
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        fetched = await fetcher.get_object(f"{peer.base}/users/bob")
    assert fetched.document["type"] == "Person"
    assert peer.requests[0].headers["Accept"].startswith(AS2)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.0.0.7/x",
        "http://10.255.255.255/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.1.1/",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
    ],
)
async def test_non_public_addresses_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_url(url, PUBLIC_ONLY)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fc00::1"])
def test_special_purpose_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden_address(address)


@pytest.mark.parametrize("target", ["127.0.0.1", "10.0.0.1", "169.254.169.254"])
async def test_a_name_that_resolves_to_a_private_address_is_refused(
    peer: Peer, target: str
) -> None:
    port = peer.base.rsplit(":", 1)[1]
    fetcher = _fetcher(PUBLIC_ONLY, FakeDns({"evil.example": target}))
    async with fetcher.session:
        with pytest.raises(FetchError, match="non-public"):
            await fetcher.get_object(f"http://evil.example:{port}/users/bob")
    assert peer.requests == []


async def test_https_only_unless_development(peer: Peer) -> None:
    with pytest.raises(FetchError, match="only https"):
        check_url("http://social.example/users/bob", FetchPolicy())
    with pytest.raises(FetchError):
        check_url("file:///etc/passwd", LOOPBACK_ALLOWED)
    with pytest.raises(FetchError, match="credentials"):
        check_url("https://user:pw@social.example/", FetchPolicy())


@pytest.mark.parametrize(
    "content_type", ["text/html", "application/json", "application/ld+json", "image/png"]
)
async def test_documents_that_are_not_activitystreams_are_refused(
    peer: Peer, content_type: str
) -> None:
    peer.document("/u", {"id": f"{peer.base}/u", "type": "Person"}, content_type)
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        with pytest.raises(FetchError, match="not a document"):
            await fetcher.get_object(f"{peer.base}/u")


async def test_ld_json_with_the_activitystreams_profile_is_accepted(peer: Peer) -> None:
    profile = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
    peer.document("/u", {"id": f"{peer.base}/u"}, "application/ld+json")
    peer.routes.pop("/u")

    async def handler(_request: web.Request) -> web.Response:
        body = json.dumps({"id": f"{peer.base}/u"}).encode()
        return web.Response(body=body, headers={"Content-Type": profile})

    peer.routes["/u"] = handler
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        assert (await fetcher.get_object(f"{peer.base}/u")).document["id"] == f"{peer.base}/u"


async def test_a_document_with_another_id_is_refused(peer: Peer) -> None:
    peer.document("/users/bob", {"id": "https://victim.example/users/alice", "type": "Person"})
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        with pytest.raises(FetchError, match="another id"):
            await fetcher.get_object(f"{peer.base}/users/bob")


async def test_redirects_are_followed_to_a_document_on_the_final_url(peer: Peer) -> None:
    async def moved(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/users/bob")

    peer.routes["/@bob"] = moved
    peer.document("/users/bob", {"id": f"{peer.base}/users/bob"})
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        fetched = await fetcher.get_object(f"{peer.base}/@bob")
    assert fetched.url == f"{peer.base}/users/bob"


async def test_more_than_three_redirects_are_refused(peer: Peer) -> None:
    for hop in range(5):

        async def redirect(_request: web.Request, hop: int = hop) -> web.Response:
            raise web.HTTPFound(f"/hop{hop + 1}")

        peer.routes[f"/hop{hop}"] = redirect
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        with pytest.raises(FetchError, match="redirects"):
            await fetcher.get_object(f"{peer.base}/hop0")


@pytest.mark.parametrize("chunked", [False, True])
async def test_bodies_over_the_limit_are_refused(peer: Peer, chunked: bool) -> None:
    padding = "x" * (2 * 1024 * 1024)

    async def big(request: web.Request) -> web.StreamResponse:
        body = json.dumps({"id": f"{peer.base}/big", "padding": padding}).encode()
        if not chunked:
            return web.Response(body=body, content_type=AS2)
        response = web.StreamResponse(headers={"Content-Type": AS2})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 65536):
            await response.write(body[start : start + 65536])
        await response.write_eof()
        return response

    peer.routes["/big"] = big
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        with pytest.raises(FetchError, match="larger than"):
            await fetcher.get_object(f"{peer.base}/big")


async def test_a_deeply_nested_document_is_refused(peer: Peer) -> None:
    bomb = '{{"id": "{}", "a": '.format(f"{peer.base}/bomb") + "[" * 50_000 + "]" * 50_000 + "}"

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=bomb, content_type=AS2)

    peer.routes["/bomb"] = handler
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        with pytest.raises(FetchError, match="nest"):
            await fetcher.get_object(f"{peer.base}/bomb")


async def test_a_slow_peer_is_abandoned_at_the_deadline(peer: Peer) -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="{}", content_type=AS2)

    peer.routes["/slow"] = slow
    policy = FetchPolicy(allow_private_addresses=True, allow_http=True, total_timeout_s=0.3)
    fetcher = _fetcher(policy)
    async with fetcher.session:
        with pytest.raises(FetchError, match="too long"):
            await fetcher.get_object(f"{peer.base}/slow")


async def test_http_errors_carry_their_status(peer: Peer) -> None:
    async def gone(_request: web.Request) -> web.Response:
        return web.Response(status=410)

    peer.routes["/gone"] = gone
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        with pytest.raises(FetchError) as missing:
            await fetcher.get_object(f"{peer.base}/nobody")
        with pytest.raises(FetchError) as deleted:
            await fetcher.get_object(f"{peer.base}/gone")
    assert missing.value.is_not_found
    assert deleted.value.is_gone


async def test_gets_are_signed_when_a_signer_is_given(peer: Peer) -> None:
    peer.document("/u", {"id": f"{peer.base}/u"})
    seen: list[tuple[str, str]] = []

    async def signer(method: str, url: str, headers: object, body: bytes) -> dict[str, str]:
        seen.append((method, url))
        return {"Signature": 'keyId="k",signature="s"'}

    fetcher = _fetcher(LOOPBACK_ALLOWED, signer=signer)
    async with fetcher.session:
        await fetcher.get_object(f"{peer.base}/u")
    assert seen == [("GET", f"{peer.base}/u")]
    assert peer.requests[0].headers["Signature"] == 'keyId="k",signature="s"'


async def test_webfinger_finds_the_self_link(peer: Peer) -> None:
    host = peer.base.removeprefix("http://")
    jrd = {
        "subject": f"acct:bob@{host}",
        "links": [
            {"rel": "http://webfinger.net/rel/profile-page", "href": f"{peer.base}/@bob"},
            {"rel": "self", "type": AS2, "href": f"{peer.base}/users/bob"},
        ],
    }
    peer.document("/.well-known/webfinger", jrd, "application/jrd+json")
    fetcher = _fetcher(LOOPBACK_ALLOWED)
    async with fetcher.session:
        assert await fetcher.webfinger("bob", host) == f"{peer.base}/users/bob"
    assert peer.requests[0].query["resource"] == f"acct:bob@{host}"


def _file(peer: Peer, path: str, body: bytes, content_type: str) -> str:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    peer.routes[path] = handler
    return peer.base + path


async def test_a_peers_picture_is_fetched_unsigned_within_its_size_and_type(peer: Peer) -> None:
    url = _file(peer, "/p.png", b"\x89PNG" + b"0" * 96, "image/png")
    page = _file(peer, "/page", b"<html></html>", "text/html")

    async def signer(*_args: object) -> dict[str, str]:
        return {"Signature": "signed"}

    fetcher = _fetcher(LOOPBACK_ALLOWED, signer=signer)
    async with fetcher.session:
        fetched = await fetcher.get_file(url, "image/*", is_image_media_type, 100)
        assert (fetched.data[:4], fetched.content_type) == (b"\x89PNG", "image/png")
        with pytest.raises(FetchError, match="larger than 99 bytes"):
            await fetcher.get_file(url, "image/*", is_image_media_type, 99)
        with pytest.raises(FetchError, match="text/html"):
            await fetcher.get_file(page, "image/*", is_image_media_type, 100)
    assert all("Signature" not in request.headers for request in peer.requests)


async def test_a_peers_picture_on_a_private_address_is_refused(peer: Peer) -> None:
    port = peer.base.rsplit(":", 1)[1]
    _file(peer, "/p.png", b"\x89PNG", "image/png")
    fetcher = _fetcher(PUBLIC_ONLY, FakeDns({"media.example": "127.0.0.1"}))
    async with fetcher.session:
        for url in (f"{peer.base}/p.png", f"http://media.example:{port}/p.png"):
            with pytest.raises(FetchError):
                await fetcher.get_file(url, "image/*", is_image_media_type, 100)
    assert peer.requests == []
