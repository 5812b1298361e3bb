"""Bearer-token authentication for client APIs, with the scope each endpoint needs."""

from __future__ import annotations

from aiohttp import web

from server.api.errors import ApiError
from server.appkeys import CLOCK, DATABASE
from server.identity.tokens import Grant, authenticate, record_use

_TOKEN_LENGTH_MAX = 512


async def require_grant(request: web.Request, scope: str, *alternatives: str) -> Grant:
    """The caller's grant; 401 without a valid token, 403 when it has none of the scopes."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _TOKEN_LENGTH_MAX:
        raise ApiError(401, "The access token is invalid", headers=_challenge())
    db = request.app[DATABASE]
    async with db.read() as conn:
        grant = await authenticate(conn, token)
    if grant is None:
        raise ApiError(401, "The access token is invalid", headers=_challenge())
    if not any(grant.allows(s) for s in (scope, *alternatives)):
        raise ApiError(
            403,
            "This action is outside the authorized scopes",
            f"the token needs the {scope!r} scope",
        )
    now = request.app[CLOCK]()
    if grant.needs_recording(now):
        async with db.transaction() as conn:
            await record_use(conn, grant, now)
    return grant


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
