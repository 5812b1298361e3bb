"""Fetching remote documents safely: signed GETs, AS2 only, size and time limits, SSRF guard.

Every URL here comes from remote input, so each hop is checked: the scheme, the addresses the
host resolves to (loopback, private, link-local, multicast and other non-global ranges are
refused unless the operator allows them), the redirect count, the content type, the body size,
and finally that the document's `id` is the URL it was fetched from (CVE-2024-23832).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from federation.domains import DomainRules, host_of_url
from federation.observe import FETCH, Observe, ignore
from protocol.errors import ProtocolError
from protocol.jsonsafe import parse_json_document
from protocol.vocab import AS2_CONTEXT, AS2_MEDIA_TYPE, AS2_PROFILE_MEDIA_TYPE, JRD_MEDIA_TYPE

AS2_ACCEPT = f"{AS2_MEDIA_TYPE}, {AS2_PROFILE_MEDIA_TYPE}"
# Adds the headers that sign a request: (method, url, headers, body) -> headers to add.
Signer = Callable[[str, str, Mapping[str, str], bytes], Awaitable[Mapping[str, str]]]


class FetchError(Exception):
    """A remote document could not be fetched or trusted; `reason` says why."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    @property
    def is_gone(self) -> bool:
        return self.status == 410

    @property
    def is_temporary(self) -> bool:
        """A failure worth retrying later (a timeout, a network error, a 5xx)."""
        return self.status is None or self.status >= 500 or self.status == 429

    @property
    def is_not_found(self) -> bool:
        return self.status == 404


class ForbiddenAddress(FetchError):
    """The URL points at an address remote input must not make us reach."""

    @property
    def is_temporary(self) -> bool:
        return False


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for every remote fetch (Mastodon's: 1 MiB, 5 s connect, 30 s in all, 3 hops)."""

    allow_private_addresses: bool = False
    body_bytes_max: int = 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 30.0
    redirects_max: int = 3
    user_agent: str = "Kith"
    # Development nodes run on plain http; production peers are reached over https only.
    allow_http: bool = False


def is_forbidden_address(address: str) -> bool:
    """Whether an IP address is not a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves names and refuses the whole answer if any address is forbidden.

    Checking what the connection will actually use (not a separate lookup) closes the
    DNS-rebinding gap between check and connect.
    """

    def __init__(
        self, allow_private_addresses: bool, inner: AbstractResolver | None = None
    ) -> None:
        self._inner = inner or aiohttp.ThreadedResolver()
        self._allow_private = allow_private_addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for result in results:
                if is_forbidden_address(result["host"]):
                    raise ForbiddenAddress(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def create_session(
    policy: FetchPolicy, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A client session whose connections can only reach permitted addresses."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy.allow_private_addresses, resolver),
        limit=256,
        limit_per_host=8,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": policy.user_agent},
        timeout=aiohttp.ClientTimeout(
            total=policy.total_timeout_s,
            sock_connect=policy.connect_timeout_s,
            sock_read=policy.read_timeout_s,
        ),
    )


def check_url(url: str, policy: FetchPolicy) -> None:
    """Refuse URLs we must not fetch before any connection is made."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ForbiddenAddress(f"malformed URL {url!r}") from None
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise ForbiddenAddress(f"refusing to fetch {url!r}: only {'/'.join(allowed)} URLs")
    if parts.username or parts.password:
        raise ForbiddenAddress("refusing a URL with credentials")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return
    if not policy.allow_private_addresses and is_forbidden_address(str(literal)):
        raise ForbiddenAddress(f"refusing to fetch the non-public address {host}")


@dataclass(frozen=True)
class Fetched:
    """A fetched JSON document and the URL it finally came from."""

    url: str
    document: dict[str, Any]


@dataclass(frozen=True)
class FetchedFile:
    """A fetched file (a peer's picture): its bytes, as the server typed them."""

    url: str
    content_type: str
    data: bytes


class Fetcher:
    """GETs remote JSON documents under a FetchPolicy, signing them when a signer is given."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: FetchPolicy,
        signer: Signer | None,
        domains: DomainRules | None = None,
        observe: Observe = ignore,
    ) -> None:
        self.session = session
        self.policy = policy
        self.signer = signer
        self.observe = observe
        self.domains = domains or DomainRules()

    async def get_object(self, url: str) -> Fetched:
        """An AS2 object whose `id` is the URL it was finally served from, on the same host."""
        fetched = await self.get_json(url, accept=AS2_ACCEPT, media_types=is_as2_media_type)
        if fetched.document.get("id") != fetched.url:
            raise FetchError(f"the document at {fetched.url} has another id")
        if urlsplit(fetched.url).netloc != urlsplit(url).netloc:
            raise FetchError("the document was served from another host")
        return fetched

    async def get_json(self, url: str, accept: str, media_types: Callable[[str], bool]) -> Fetched:
        """Follow up to `redirects_max` redirects, then read a bounded JSON body."""
        fetched = await self._get(url, accept, media_types, self.policy.body_bytes_max, True)
        try:
            return Fetched(url=fetched.url, document=parse_json_document(fetched.data))
        except ProtocolError as exc:
            raise FetchError(f"{fetched.url}: {exc}") from None

    async def get_file(
        self, url: str, accept: str, media_types: Callable[[str], bool], bytes_max: int
    ) -> FetchedFile:
        """A file of one of `media_types`, at most `bytes_max` long, under the same guard,
        redirect and time limits as documents; unsigned (servers do not ask for a signature
        on their media, and it would cost an RSA signature each)."""
        return await self._get(url, accept, media_types, bytes_max, False)

    async def _get(
        self,
        url: str,
        accept: str,
        media_types: Callable[[str], bool],
        bytes_max: int,
        signed: bool,
    ) -> FetchedFile:
        try:
            async with asyncio.timeout(self.policy.total_timeout_s):
                fetched = await self._follow(url, accept, media_types, bytes_max, signed)
        except TimeoutError:
            self.observe(FETCH, ("timeout",))
            raise FetchError(f"fetching {url} took too long") from None
        except aiohttp.ClientError as exc:
            self.observe(FETCH, ("network",))
            raise FetchError(f"fetching {url} failed: {type(exc).__name__}") from None
        except FetchError as exc:
            self.observe(FETCH, (_fetch_outcome(exc),))
            raise
        self.observe(FETCH, ("ok",))
        return fetched

    async def _follow(
        self,
        url: str,
        accept: str,
        media_types: Callable[[str], bool],
        bytes_max: int,
        signed: bool,
    ) -> FetchedFile:
        for _ in range(self.policy.redirects_max + 1):
            check_url(url, self.policy)
            if self.domains.refuses(url):
                raise FetchError(f"{host_of_url(url)} is a domain this node does not federate with")
            headers = {"Accept": accept}
            if signed and self.signer is not None:
                headers.update(await self.signer("GET", url, headers, b""))
            async with self.session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308):
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                if response.status != 200:
                    raise FetchError(f"{url} answered {response.status}", response.status)
                content_type = response.headers.get("Content-Type", "")
                if not media_types(content_type):
                    raise FetchError(
                        f"{url} is {content_type or 'untyped'}, not a document of the type asked"
                    )
                body = await _read_bounded(response, bytes_max)
            return FetchedFile(url=url, content_type=content_type, data=body)
        raise FetchError(f"more than {self.policy.redirects_max} redirects from {url}")

    async def webfinger(self, username: str, host: str) -> str:
        """The actor id that `username@host` names, checked to be on that host's side."""
        scheme = "http" if self.policy.allow_http else "https"
        url = f"{scheme}://{host}/.well-known/webfinger?resource=acct:{username}@{host}"
        fetched = await self.get_json(url, accept=JRD_MEDIA_TYPE, media_types=_is_json)
        for link in fetched.document.get("links") or []:
            if (
                isinstance(link, dict)
                and link.get("rel") == "self"
                and is_as2_media_type(str(link.get("type", "")))
            ):
                href = link.get("href")
                if isinstance(href, str):
                    return href
        raise FetchError(f"{username}@{host} has no ActivityPub actor")


def _fetch_outcome(exc: FetchError) -> str:
    """A failed fetch's class for the metrics (federation.observe.FETCH)."""
    if isinstance(exc, ForbiddenAddress):
        return "refused"
    if exc.status is None:
        return "invalid"
    return "http_5xx" if exc.status >= 500 else "http_4xx"


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise FetchError(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise FetchError(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(content_type: str) -> tuple[str, str]:
    kind, _, params = content_type.partition(";")
    return kind.strip().lower(), params


def is_as2_media_type(content_type: str) -> bool:
    """activity+json, or ld+json with the ActivityStreams profile (Mastodon's rule)."""
    kind, params = _media_type(content_type)
    if kind == AS2_MEDIA_TYPE:
        return True
    return kind == "application/ld+json" and AS2_CONTEXT in params


def is_image_media_type(content_type: str) -> bool:
    """image/* (the real format is sniffed from the bytes afterwards)."""
    kind, _ = _media_type(content_type)
    return kind.startswith("image/")


def _is_json(content_type: str) -> bool:
    kind, _ = _media_type(content_type)
    return kind in (JRD_MEDIA_TYPE, "application/json") or is_as2_media_type(content_type)
