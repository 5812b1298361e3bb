"""Bearer-token authentication for client APIs, with the scope each endpoint needs."""

from __future__ import annotations

from aiohttp import web

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
    token = bearer_token(request)
    if token is None:
        return None
    if len(token) > _TOKEN_LENGTH_MAX:
        raise ApiError(401, "The access token is invalid", headers=_challenge())
    db = request.app[DATABASE]
    now = request.app[CLOCK]()
    async with db.read() as conn:
        grant = await authenticate(conn, token, now)
    if grant is None:
        raise ApiError(401, "The access token is invalid", headers=_challenge())
    if grant.needs_recording(now):
        async with db.transaction() as conn:
            await record_use(conn, grant, now)
    request[_GRANT] = grant
    return grant


async def require_grant(request: web.Request, scope: str, *alternatives: str) -> Grant:
    """The caller's grant; 401 without a valid token, 403 when it has none of the scopes."""
    grant = await optional_grant(request)
    if grant is None:
        raise ApiError(401, "The access token is invalid", headers=_challenge())
    if not any(grant.allows(s) for s in (scope, *alternatives)):
        raise ApiError(
            403,
            "This action is outside the authorized scopes",
            f"the token needs the {scope!r} scope",
        )
    return grant


async def require_account(request: web.Request, scope: str, *alternatives: str) -> Account:
    """The signed-in user; an application's own token is refused as Mastodon does (422)."""
    grant = await require_grant(request, scope, *alternatives)
    if grant.account is None:
        raise ApiError(422, "This method requires an authenticated user")
    return grant.account


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
