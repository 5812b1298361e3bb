"""Bearer-token authentication for client APIs, with the scope each endpoint needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.errors import ApiError
from server.appkeys import CLOCK, DATABASE
from server.identity.accounts import Account
from server.identity.tokens import Grant, authenticate, record_uses
from server.storage.engine import Database

log = logging.getLogger("kith.api.auth")
_TOKEN_LENGTH_MAX = 512
_WRITE_SLICE = 100
# The grant is resolved once per request, however many helpers ask for it.
_GRANT = web.RequestKey("kith_grant", Grant)


class TokenUseLog:
    """When tokens (and their accounts) were last used: noted by requests, written in batches.

    A request only notes the use (at most once a minute per token, as before); the writes
    follow within `delay_s`, for every token noted meanwhile, in transactions of up to
    `_WRITE_SLICE` tokens. Written from
    requests, they queued on SQLite's single writer holding pooled connections, and a burst
    of first uses (every client after a restart) stalled reads behind them.
    """

    def __init__(self, db: Database, delay_s: float = 1.0) -> None:
        self.db = db
        self.delay_s = delay_s
        self._pending: dict[int, tuple[Grant, datetime]] = {}
        self._writer: asyncio.Task[None] | None = None

    def note(self, grant: Grant, now: datetime) -> None:
        if not grant.needs_recording(now) or grant.token_id in self._pending:
            return
        self._pending[grant.token_id] = (grant, now)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_soon(), name="token-use")

    async def flush(self) -> None:
        """Write every use noted so far."""
        while self._pending:
            # In slices: statements run inline on SQLite, and one write for a thousand tokens
            # (all of them due again a minute after a restart) held the loop for 30 ms.
            tokens = list(self._pending)[:_WRITE_SLICE]
            batch = [self._pending.pop(token) for token in tokens]
            async with self.db.transaction() as conn:
                await record_uses(conn, batch)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.flush()

    async def _write_soon(self) -> None:
        await asyncio.sleep(self.delay_s)
        try:
            await self.flush()
        except Exception:  # last-use times are statistics: never let them take a request down
            log.exception("could not record token use")


TOKEN_USE = web.AppKey("kith_token_use", TokenUseLog)


SUSPENDED = "Your login is currently disabled"  # Mastodon's words for a suspended account
PENDING = "Your login is currently pending approval"  # and for a sign-up not yet approved


def install(app: web.Application) -> None:
    """Give the app its token-use log, written out when the app stops."""
    app[TOKEN_USE] = TokenUseLog(app[DATABASE])

    async def run(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[TOKEN_USE].close()

    app.cleanup_ctx.append(run)


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
    request.app[TOKEN_USE].note(grant, request.app[CLOCK]())
    return grant


@asynccontextmanager
async def reading_as(
    request: web.Request, scope: str, *alternatives: str
) -> AsyncIterator[tuple[Account, AsyncConnection]]:
    """The signed-in user (as `require_account`) and a read unit of work, for hot endpoints.

    The token is looked up in the endpoint's own unit of work (opening one costs more than a
    query).
    """
    async with request.app[DATABASE].read() as conn:
        grant = request.get(_GRANT)
        if grant is None:
            grant = await _authenticate(request, conn)
            request.app[TOKEN_USE].note(grant, request.app[CLOCK]())
        yield _account_of(_with_scope(grant, scope, alternatives)), conn


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
    if grant.account is not None and grant.account.is_suspended:
        raise ApiError(403, SUSPENDED, "the account is suspended by the operators")
    if grant.account is not None and grant.account.is_pending:
        raise ApiError(403, PENDING, "an administrator has not approved the sign-up yet")
    request[_GRANT] = grant
    return grant


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
