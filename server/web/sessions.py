"""Browser sessions of the web client, its OAuth application, and CSRF tokens.

The web client is an OAuth application of the node itself (`WEB_CLIENT_ID`, registered on first
use with the node's own `/auth/callback` as its redirect URI). Signing in runs the ordinary
authorization-code flow with PKCE against `/oauth/authorize`; the code is redeemed in-process
and the token's *text is dropped*: the session row (`web_sessions`) keeps the token's row id, so
revoking the token (sign out, a password change, "authorised apps") ends the session too.

The cookie carries a random session id (`__Host-kith_session` on https, with `Secure`; always
`HttpOnly` and `SameSite=Lax`); the database keeps only its SHA-256. The CSRF token of a form
is an HMAC of that id (or, before signing in, of an anonymous cookie's value): it is tied to the
session, needs no storage, and tells nothing about the id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from server.appkeys import CLOCK, DATABASE, URLS
from server.identity.oauth import Application, application_by_client_id
from server.identity.tokens import Grant, authenticate_token_id, token_digest
from server.storage.ids import new_id
from server.storage.tables import access_tokens, oauth_applications, web_sessions
from server.urls import Urls

# Registered apps get token_urlsafe ids and URL clients "url:…": a colon and a dot never
# appear in the first, and this is not a URL client's prefix.
WEB_CLIENT_ID = "kith.web:client"
WEB_CLIENT_NAME = "Kith web"
WEB_SCOPES = ("read", "write", "follow", "push")
SESSION_LIFETIME = timedelta(days=30)
SIGN_IN_LIFETIME = timedelta(minutes=10)
CALLBACK_PATH = "/auth/callback"
_CSRF_LABEL = b"kith web form"
# The grant of the request's session, looked up once per request.
_SESSION = web.RequestKey("kith_web_session", object)


@dataclass(frozen=True)
class Cookies:
    """The cookie names and flags for this node: `__Host-` and `Secure` only on https."""

    secure: bool

    @classmethod
    def of(cls, urls: Urls) -> Cookies:
        return cls(secure=urls.base_url.startswith("https://"))

    @property
    def session(self) -> str:
        return "__Host-kith_session" if self.secure else "kith_session"

    @property
    def anonymous(self) -> str:
        """Before signing in, forms are tied to this cookie instead."""
        return "__Host-kith_anon" if self.secure else "kith_anon"

    @property
    def sign_in(self) -> str:
        """The OAuth `state`, PKCE verifier and target of a sign-in under way."""
        return "__Host-kith_sign_in" if self.secure else "kith_sign_in"

    def set(self, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",  # __Host- requires Path=/ and no Domain
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, response: web.StreamResponse, name: str) -> None:
        response.del_cookie(name, path="/", secure=self.secure, httponly=True, samesite="Lax")


def cookies(request: web.Request) -> Cookies:
    return Cookies.of(request.app[URLS])


# --- the web client as an OAuth application -------------------------------------------------


async def web_client(conn: AsyncConnection, urls: Urls, now: datetime) -> Application:
    """The node's own web client application, registered on first use; its redirect URI
    follows the node's base URL (an operator may change it)."""
    redirect_uri = urls.base_url + CALLBACK_PATH
    await insert_ignoring_duplicates(
        conn,
        oauth_applications,
        {
            "id": new_id(now),
            "name": WEB_CLIENT_NAME,
            "website": urls.base_url,
            "redirect_uris": redirect_uri,
            "scopes": " ".join(WEB_SCOPES),
            "client_id": WEB_CLIENT_ID,
            # Nobody knows a secret whose digest this is: the code is redeemed in-process.
            "client_secret_sha256": token_digest(secrets.token_urlsafe(32)),
            "created_at": now,
        },
        ["client_id"],
    )
    application = await application_by_client_id(conn, WEB_CLIENT_ID)
    assert application is not None
    if application.redirect_uris != (redirect_uri,):
        await conn.execute(
            update(oauth_applications)
            .where(oauth_applications.c.id == application.id)
            .values(redirect_uris=redirect_uri, website=urls.base_url)
        )
        application = await application_by_client_id(conn, WEB_CLIENT_ID)
        assert application is not None
    return application


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# --- sessions -------------------------------------------------------------------------------


async def open_session(conn: AsyncConnection, access_token: str, now: datetime) -> str:
    """A new session for a user's token just issued to the web client; returns the cookie's
    value (its only copy). The token's text is not kept: the session stands for it."""
    row = (
        await conn.execute(
            select(access_tokens.c.id, access_tokens.c.account_id).where(
                access_tokens.c.token_sha256 == token_digest(access_token)
            )
        )
    ).one()
    token_id, account_id = row.id, row.account_id
    # Expired sessions go when someone signs in (their tokens with them): cheap, and bounded.
    await _forget_expired(conn, now)
    session_id = secrets.token_urlsafe(32)
    await conn.execute(
        insert(web_sessions).values(
            id_sha256=token_digest(session_id),
            account_id=account_id,
            token_id=token_id,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    await conn.execute(
        update(access_tokens)
        .where(access_tokens.c.id == token_id)
        .values(expires_at=now + SESSION_LIFETIME)
    )
    return session_id


async def _forget_expired(conn: AsyncConnection, now: datetime) -> None:
    expired = select(web_sessions.c.token_id).where(web_sessions.c.expires_at <= now)
    await conn.execute(
        update(access_tokens)
        .where(access_tokens.c.id.in_(expired), access_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))


async def session_grant_of(conn: AsyncConnection, session_id: str, now: datetime) -> Grant | None:
    """The grant a live session stands for: its token must still be live too."""
    row = (
        await conn.execute(
            select(web_sessions.c.token_id, web_sessions.c.expires_at).where(
                web_sessions.c.id_sha256 == token_digest(session_id)
            )
        )
    ).first()
    if row is None or row.expires_at <= now:
        return None
    grant = await authenticate_token_id(conn, row.token_id, now)
    if grant is None or grant.account is None:
        return None
    if grant.account.is_suspended or grant.account.is_pending:
        return None
    return grant


async def close_session(conn: AsyncConnection, session_id: str, now: datetime) -> None:
    """Sign out: the session and the token it stands for are gone."""
    digest = token_digest(session_id)
    token_id = await conn.scalar(
        select(web_sessions.c.token_id).where(web_sessions.c.id_sha256 == digest)
    )
    await conn.execute(delete(web_sessions).where(web_sessions.c.id_sha256 == digest))
    if token_id is not None:
        await conn.execute(
            update(access_tokens)
            .where(access_tokens.c.id == token_id, access_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )


async def session_grant(request: web.Request, fresh: bool = False) -> Grant | None:
    """The grant of the request's session cookie (looked up once per request unless `fresh`)."""
    if not fresh and _SESSION in request:
        return request[_SESSION]  # type: ignore[return-value]
    session_id = request.cookies.get(cookies(request).session, "")
    grant = None
    if 0 < len(session_id) <= 128:
        async with request.app[DATABASE].read() as conn:
            grant = await session_grant_of(conn, session_id, request.app[CLOCK]())
    request[_SESSION] = grant
    return grant


async def stream_grant(request: web.Request) -> Grant | None:
    """The web session of a same-origin WebSocket to the streaming API. Browsers send cookies
    with WebSockets but no CORS: the Origin must be the node's own (cross-site WebSocket
    hijacking); SameSite=Lax already keeps the cookie off cross-site handshakes."""
    if request.headers.get("Origin") != origin_of(request.app[URLS]):
        return None
    return await session_grant(request)


def origin_of(urls: Urls) -> str:
    """The node's origin as browsers write it in `Origin` (scheme://host[:port])."""
    scheme, _, rest = urls.base_url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


# --- CSRF -----------------------------------------------------------------------------------


def csrf_token_for(cookie_value: str) -> str:
    """The synchronizer token of the forms of a session (or anonymous visitor)."""
    mac = hmac.new(cookie_value.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def form_cookie(request: web.Request) -> tuple[str, str] | None:
    """The (name, value) of the cookie the request's forms are tied to, if it has one."""
    names = cookies(request)
    for name in (names.session, names.anonymous):
        value = request.cookies.get(name, "")
        if 0 < len(value) <= 128:
            return name, value
    return None


def csrf_ok(request: web.Request, submitted: str) -> bool:
    """Whether a POST's token matches its cookie and it comes from our own pages."""
    found = form_cookie(request)
    if found is None or not submitted:
        return False
    if not hmac.compare_digest(csrf_token_for(found[1]), submitted):
        return False
    return same_origin(request)


def same_origin(request: web.Request) -> bool:
    """Origin (or, without one, Referer) names this node: browsers send Origin with every
    POST, so a missing pair means the request did not come from one of our pages."""
    ours = origin_of(request.app[URLS])
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin == ours
    referer = request.headers.get("Referer", "")
    return referer == ours or referer.startswith(ours + "/")
