"""OAuth 2 (RFC 6749) with PKCE (RFC 7636): client applications, codes and token grants."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from server.identity.tokens import (
    InvalidScope,
    IssuedToken,
    issue_token,
    parse_scopes,
    token_digest,
)
from server.storage.ids import new_id
from server.storage.tables import access_tokens, oauth_applications, oauth_codes

OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"
# Registered apps get random client ids; this prefix cannot start one (token_urlsafe).
_URL_CLIENT_PREFIX = "url:"
CODE_LIFETIME = timedelta(minutes=10)
_NAME_MAX = 255


class OAuthError(Exception):
    """An RFC 6749 error: `error` is the standard code, `description` the human reason."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class Application:
    id: int
    name: str
    website: str | None
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    client_id: str

    @property
    def is_url_client(self) -> bool:
        """Stands for a C2S client named by its URL (kept in `website`)."""
        return self.client_id.startswith(_URL_CLIENT_PREFIX)


def _application(row: object) -> Application:
    return Application(
        id=row.id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        website=row.website,  # type: ignore[attr-defined]
        redirect_uris=tuple(row.redirect_uris.split("\n")),  # type: ignore[attr-defined]
        scopes=tuple(row.scopes.split()),  # type: ignore[attr-defined]
        client_id=row.client_id,  # type: ignore[attr-defined]
    )


def checked_scopes(text: str | None, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Requested scopes (default `read`), each known and, if given, within `allowed`."""
    try:
        scopes = parse_scopes(text or "read")
    except InvalidScope as exc:
        raise OAuthError("invalid_scope", str(exc)) from None
    if allowed is not None:
        outside = [s for s in scopes if s not in allowed and not _covered(s, allowed)]
        if outside:
            raise OAuthError("invalid_scope", f"the application may not ask for {outside[0]!r}")
    return scopes


def _covered(scope: str, allowed: tuple[str, ...]) -> bool:
    parent = scope.rpartition(":")[0]
    return bool(parent) and (parent in allowed or _covered(parent, allowed))


def checked_redirect_uris(value: str | list[str] | None) -> tuple[str, ...]:
    """Redirect URIs: the out-of-band one, or absolute URIs without fragments (apps use
    custom schemes such as `myapp://callback`)."""
    if value is not None and not isinstance(value, str | list):
        raise OAuthError("invalid_request", "redirect_uris is a string or a list of strings")
    uris = value if isinstance(value, list) else (value or "").split()
    if not uris:
        raise OAuthError("invalid_request", "redirect_uris is required")
    for uri in uris:
        if not isinstance(uri, str):
            raise OAuthError("invalid_request", "redirect_uris is a list of strings")
        if uri == OOB_REDIRECT:
            continue
        parts = urlsplit(uri)
        if not parts.scheme or parts.fragment or len(uri) > 2048 or parts.scheme == "javascript":
            raise OAuthError("invalid_request", f"{uri!r} is not a valid redirect URI")
    return tuple(dict.fromkeys(uris))


async def register_application(
    conn: AsyncConnection,
    name: str,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    website: str | None,
    now: datetime,
) -> tuple[Application, str]:
    """A new client; returns it and its secret (stored only as a digest)."""
    if not name.strip() or len(name) > _NAME_MAX:
        raise OAuthError("invalid_request", f"client_name must have 1 to {_NAME_MAX} characters")
    app_id = new_id(now)
    client_id = secrets.token_urlsafe(32)
    secret = secrets.token_urlsafe(32)
    await conn.execute(
        insert(oauth_applications).values(
            id=app_id,
            name=name,
            website=website,
            redirect_uris="\n".join(redirect_uris),
            scopes=" ".join(scopes),
            client_id=client_id,
            client_secret_sha256=token_digest(secret),
            created_at=now,
        )
    )
    application = await application_by_client_id(conn, client_id)
    assert application is not None
    return application, secret


async def application_by_client_id(conn: AsyncConnection, client_id: str) -> Application | None:
    row = (
        await conn.execute(
            select(oauth_applications).where(oauth_applications.c.client_id == client_id[:64])
        )
    ).first()
    return _application(row) if row else None


URL_CLIENT_SCOPES = ("read", "write", "follow", "push")


def is_url_client_id(client_id: str | None) -> bool:
    """ActivityPub C2S clients name themselves by a URL instead of registering."""
    return (
        bool(client_id) and client_id.startswith(("https://", "http://")) and len(client_id) <= 2048
    )


def url_client_allows(client_id: str, redirect_uri: str) -> bool:
    """A URL-named client may only send the code back to its own origin (or show it)."""
    if redirect_uri == OOB_REDIRECT:
        return True
    client, target = urlsplit(client_id), urlsplit(redirect_uri)
    return (client.scheme, client.netloc) == (target.scheme, target.netloc)


async def url_client(conn: AsyncConnection, client_id: str, now: datetime) -> Application:
    """The application row standing for a URL-named client, made on its first use. It has no
    usable secret: it is a public client, and its codes need PKCE."""
    key = _url_client_key(client_id)
    existing = await application_by_client_id(conn, key)
    if existing is not None:
        return existing
    await insert_ignoring_duplicates(
        conn,
        oauth_applications,
        {
            "id": new_id(now),
            "name": (urlsplit(client_id).netloc or client_id)[:_NAME_MAX],
            "website": client_id,
            "redirect_uris": OOB_REDIRECT,
            "scopes": " ".join(URL_CLIENT_SCOPES),
            "client_id": key,
            "client_secret_sha256": token_digest(secrets.token_urlsafe(32)),
            "created_at": now,
        },
        ["client_id"],
    )
    application = await application_by_client_id(conn, key)
    assert application is not None
    return application


def _url_client_key(client_id: str) -> str:
    return _URL_CLIENT_PREFIX + hashlib.sha256(client_id.encode()).hexdigest()[:60]


async def application_by_id(conn: AsyncConnection, app_id: int) -> Application | None:
    row = (
        await conn.execute(select(oauth_applications).where(oauth_applications.c.id == app_id))
    ).first()
    return _application(row) if row else None


async def authenticate_client(
    conn: AsyncConnection, client_id: str | None, client_secret: str | None
) -> Application:
    """The client, if its secret matches (constant-time); invalid_client (401) otherwise.

    A URL-named client (C2S) has no secret; it exists once it has asked for authorization.
    """
    if is_url_client_id(client_id) and not client_secret:
        found = await application_by_client_id(conn, _url_client_key(client_id or ""))
        if found is None:
            raise OAuthError("invalid_client", "this client has not asked for authorization", 401)
        return found
    if not client_id or not client_secret:
        raise OAuthError("invalid_client", "client_id and client_secret are required", 401)
    row = (
        await conn.execute(
            select(oauth_applications).where(oauth_applications.c.client_id == client_id[:64])
        )
    ).first()
    expected = row.client_secret_sha256 if row else token_digest(secrets.token_hex(8))
    if row is None or not hmac.compare_digest(expected, token_digest(client_secret)):
        raise OAuthError("invalid_client", "the client is unknown or its secret is wrong", 401)
    return _application(row)


async def issue_code(
    conn: AsyncConnection,
    application: Application,
    account_id: int,
    redirect_uri: str,
    scopes: tuple[str, ...],
    code_challenge: str | None,
    code_challenge_method: str | None,
    now: datetime,
) -> str:
    """A single-use authorization code for the consent just given."""
    if code_challenge is not None:
        method = code_challenge_method or "plain"
        if method not in ("S256", "plain") or not 43 <= len(code_challenge) <= 128:
            raise OAuthError(
                "invalid_request", "code_challenge must be S256 or plain, 43-128 chars"
            )
        code_challenge_method = method
    code = secrets.token_urlsafe(32)
    await conn.execute(
        insert(oauth_codes).values(
            code_sha256=token_digest(code),
            application_id=application.id,
            account_id=account_id,
            redirect_uri=redirect_uri,
            scopes=" ".join(scopes),
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method if code_challenge else None,
            expires_at=now + CODE_LIFETIME,
        )
    )
    return code


async def redeem_code(
    conn: AsyncConnection,
    application: Application,
    code: str,
    redirect_uri: str | None,
    code_verifier: str | None,
    now: datetime,
) -> IssuedToken:
    """Exchange a code for a token, once; a second use revokes nothing but fails."""
    row = (
        await conn.execute(
            select(oauth_codes).where(oauth_codes.c.code_sha256 == token_digest(code))
        )
    ).first()
    if row is None or row.application_id != application.id:
        raise OAuthError("invalid_grant", "the authorization code is unknown")
    if row.used_at is not None or row.expires_at.replace(tzinfo=now.tzinfo) <= now:
        raise OAuthError("invalid_grant", "the authorization code was used or has expired")
    if redirect_uri != row.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
    if row.code_challenge is not None:
        _check_pkce(row.code_challenge, row.code_challenge_method, code_verifier)
    elif application.is_url_client:
        raise OAuthError("invalid_grant", "a client named by a URL must use PKCE")
    await conn.execute(
        update(oauth_codes).where(oauth_codes.c.code_sha256 == row.code_sha256).values(used_at=now)
    )
    return await issue_token(
        conn,
        row.account_id,
        tuple(row.scopes.split()),
        application.name,
        now,
        application_id=application.id,
        with_refresh=True,
    )


def _check_pkce(challenge: str, method: str | None, verifier: str | None) -> None:
    if not verifier or not 43 <= len(verifier) <= 128:
        raise OAuthError("invalid_grant", "code_verifier is missing or malformed")
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        computed = verifier
    if not hmac.compare_digest(computed, challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match the challenge")


async def refresh(
    conn: AsyncConnection, application: Application, refresh_token: str, now: datetime
) -> IssuedToken:
    """A new token pair for a refresh token; the old pair is revoked (rotation)."""
    row = (
        await conn.execute(
            select(access_tokens).where(
                access_tokens.c.refresh_token_sha256 == token_digest(refresh_token),
                access_tokens.c.revoked_at.is_(None),
            )
        )
    ).first()
    if row is None or row.application_id != application.id:
        raise OAuthError("invalid_grant", "the refresh token is unknown or revoked")
    await conn.execute(
        update(access_tokens).where(access_tokens.c.id == row.id).values(revoked_at=now)
    )
    return await issue_token(
        conn,
        row.account_id,
        tuple(row.scopes.split()),
        row.name,
        now,
        application_id=application.id,
        with_refresh=True,
    )
