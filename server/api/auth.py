"""Bearer-token authentication for client APIs, with the scope each endpoint needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.errors import ApiError
from server.appkeys import CLOCK, DATABASE
from server.identity.accounts import Account
from server.identity.tokens import Grant, authenticate, record_use

_TOKEN_LENGTH_MAX = 512
# The grant is resolved once per request, however many helpers ask for it.
_GRANT = web.RequestKey("kith_grant", Grant)


def bearer_token(request: web.Request) -> str | None:
    """The token from `Authorization: Bearer …` (or `access_token=` for streaming clients)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "The access token is invalid", headers=_challenge())
        return token.strip()
    token = request.query.get("access_token")
    if not token and request.headers.get("Upgrade", "").lower() == "websocket":
        # Browsers cannot set headers on a WebSocket: Mastodon's web client sends the token
        # as the subprotocol (echoed back when the socket opens).
        token = request.headers.get("Sec-WebSocket-Protocol", "").split(",")[0].strip()
    return token or None


async def optional_grant(request: web.Request) -> Grant | None:
    """The caller's grant when a token is sent (it must then be valid), else None."""
    if _GRANT in request:
        return request[_GRANT]
    if _token(request) is None:
        return None
    async with request.app[DATABASE].read() as conn:
        grant = await _authenticate(request, conn)
    await _record_use(request, grant)
    return grant


@asynccontextmanager
async def reading_as(
    request: web.Request, scope: str, *alternatives: str
) -> AsyncIterator[tuple[Account, AsyncConnection]]:
    """The signed-in user (as `require_account`) and a read unit of work, for hot endpoints.

    The token is looked up in the endpoint's own unit of work (opening one costs more than a
    query). Its use is recorded once that unit of work is closed: a reader waiting for the
    write lock while it holds a pooled connection could starve the writer of connections.
    """
    grant = request.get(_GRANT)
    try:
        async with request.app[DATABASE].read() as conn:
            if grant is None:
                grant = await _authenticate(request, conn)
            yield _account_of(_with_scope(grant, scope, alternatives)), conn
    finally:
        if grant is not None:
            await _record_use(request, grant)


def _token(request: web.Request) -> str | None:
    token = bearer_token(request)
    if token is not None and len(token) > _TOKEN_LENGTH_MAX:
        raise ApiError(401, "The access token is invalid", headers=_challenge())
    return token


async def _authenticate(request: web.Request, conn: AsyncConnection) -> Grant:
    """The grant behind the request's token (which must be there and valid)."""
    token = _token(request)
    grant = None if token is None else await authenticate(conn, token, request.app[CLOCK]())
    if grant is None:
        raise ApiError(401, "The access token is invalid", headers=_challenge())
    request[_GRANT] = grant
    return grant


async def _record_use(request: web.Request, grant: Grant) -> None:
    now = request.app[CLOCK]()
    if grant.needs_recording(now):
        async with request.app[DATABASE].transaction() as conn:
            await record_use(conn, grant, now)


async def require_grant(request: web.Request, scope: str, *alternatives: str) -> Grant:
    """The caller's grant; 401 without a valid token, 403 when it has none of the scopes."""
    grant = await optional_grant(request)
    if grant is None:
        raise ApiError(401, "The access token is invalid", headers=_challenge())
    return _with_scope(grant, scope, alternatives)


def _with_scope(grant: Grant, scope: str, alternatives: tuple[str, ...]) -> Grant:
    if not any(grant.allows(s) for s in (scope, *alternatives)):
        raise ApiError(
            403,
            "This action is outside the authorized scopes",
            f"the token needs the {scope!r} scope",
        )
    return grant


async def require_account(request: web.Request, scope: str, *alternatives: str) -> Account:
    """The signed-in user; an application's own token is refused as Mastodon does (422)."""
    return _account_of(await require_grant(request, scope, *alternatives))


def _account_of(grant: Grant) -> Account:
    if grant.account is None:
        raise ApiError(422, "This method requires an authenticated user")
    return grant.account


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
