"""Bearer access tokens and the OAuth scopes they carry (Mastodon's scope names)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.identity.accounts import Account, get_account
from server.storage.ids import new_id
from server.storage.tables import access_tokens, accounts, oauth_applications

_READ = (
    "accounts",
    "blocks",
    "bookmarks",
    "favourites",
    "filters",
    "follows",
    "lists",
    "mutes",
    "notifications",
    "payments",
    "search",
    "statuses",
)
_WRITE = (
    "accounts",
    "blocks",
    "bookmarks",
    "conversations",
    "favourites",
    "filters",
    "follows",
    "lists",
    "media",
    "mutes",
    "notifications",
    "payments",
    "reports",
    "statuses",
)
_ADMIN = (
    "accounts",
    "reports",
    "domain_allows",
    "domain_blocks",
    "ip_blocks",
    "email_domain_blocks",
    "canonical_email_blocks",
)
KNOWN_SCOPES = frozenset(
    ["read", "write", "follow", "push", "profile", "admin:read", "admin:write"]
    + [f"read:{s}" for s in _READ]
    + [f"write:{s}" for s in _WRITE]
    + [f"admin:read:{s}" for s in _ADMIN]
    + [f"admin:write:{s}" for s in _ADMIN]
)
# The legacy `follow` scope covers these (Mastodon keeps it for old apps).
_FOLLOW_COVERS = frozenset(
    {"read:blocks", "write:blocks", "read:follows", "write:follows", "read:mutes", "write:mutes"}
)
DEFAULT_SCOPES = ("read", "write", "follow", "push")
# Writing last_used_at on every request would turn reads into writes; once a minute will do.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class InvalidScope(ValueError):
    """A scope name Kith does not know."""


@dataclass(frozen=True)
class Grant:
    """Who a valid token speaks for (None: an application's own token), with which scopes."""

    token_id: int
    account: Account | None
    application_id: int | None
    scopes: frozenset[str]
    last_used_at: datetime | None

    def needs_recording(self, now: datetime) -> bool:
        """Whether `record_uses` would write (so callers open a write transaction only then)."""
        return self.last_used_at is None or now - self.last_used_at >= _LAST_USED_RESOLUTION

    def allows(self, required: str) -> bool:
        return scope_allows(self.scopes, required)


@dataclass(frozen=True)
class IssuedToken:
    """A new token's texts: shown to the client once, stored only as digests."""

    access_token: str
    refresh_token: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None


def parse_scopes(text: str) -> tuple[str, ...]:
    """Split a space-separated scope list, keeping order and dropping repeats."""
    scopes = tuple(dict.fromkeys(text.split()))
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        raise InvalidScope(f"unknown scope {unknown[0]!r}")
    if not scopes:
        raise InvalidScope("at least one scope is needed")
    return scopes


def scope_allows(granted: frozenset[str], required: str) -> bool:
    """Whether a grant covers `required`: `read` covers `read:statuses`, and so on."""
    if required in granted:
        return True
    if required in _FOLLOW_COVERS and "follow" in granted:
        return True
    parent = required.rpartition(":")[0]
    return bool(parent) and scope_allows(granted, parent)


def token_digest(token: str) -> str:
    """Tokens, codes and secrets are stored as SHA-256 digests only."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def issue_token(
    conn: AsyncConnection,
    account_id: int | None,
    scopes: tuple[str, ...],
    name: str,
    now: datetime,
    application_id: int | None = None,
    with_refresh: bool = False,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Store a new token (and refresh token); this is the only time their texts exist."""
    token = secrets.token_urlsafe(32)
    refresh = secrets.token_urlsafe(32) if with_refresh else None
    await conn.execute(
        insert(access_tokens).values(
            id=new_id(now),
            account_id=account_id,
            application_id=application_id,
            token_sha256=token_digest(token),
            refresh_token_sha256=token_digest(refresh) if refresh else None,
            scopes=" ".join(scopes),
            name=name[:100],
            created_at=now,
            expires_at=expires_at,
        )
    )
    return IssuedToken(token, refresh, scopes, now, expires_at)


async def create_token(
    conn: AsyncConnection, account_id: int, scopes: tuple[str, ...], name: str, now: datetime
) -> str:
    """A bearer token for a user, as `kith token create` makes it."""
    return (await issue_token(conn, account_id, scopes, name, now)).access_token


# Every API request runs this: built once, executed with the digest as parameter.
_LIVE_TOKEN = select(
    access_tokens.c.id,
    access_tokens.c.account_id,
    access_tokens.c.application_id,
    access_tokens.c.scopes,
    access_tokens.c.last_used_at,
    access_tokens.c.expires_at,
).where(access_tokens.c.token_sha256 == bindparam("digest"), access_tokens.c.revoked_at.is_(None))


async def authenticate(conn: AsyncConnection, token: str, now: datetime) -> Grant | None:
    """The grant behind a bearer token; None if unknown, revoked, expired or its owner gone."""
    result = await conn.execute(_LIVE_TOKEN, {"digest": token_digest(token)})
    return await _grant_of(conn, result.first(), now)


_LIVE_TOKEN_BY_ID = select(*_LIVE_TOKEN.selected_columns).where(
    access_tokens.c.id == bindparam("token_id"), access_tokens.c.revoked_at.is_(None)
)


async def authenticate_token_id(
    conn: AsyncConnection, token_id: int, now: datetime
) -> Grant | None:
    """The grant of a token known by its row (a web session holds the row, not the text)."""
    result = await conn.execute(_LIVE_TOKEN_BY_ID, {"token_id": token_id})
    return await _grant_of(conn, result.first(), now)


async def _grant_of(conn: AsyncConnection, row: Any, now: datetime) -> Grant | None:
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    account = None
    if row.account_id is not None:
        account = await get_account(conn, row.account_id)
        if account is None or account.is_deleted:
            return None
    return Grant(
        token_id=row.id,
        account=account,
        application_id=row.application_id,
        scopes=frozenset(row.scopes.split()),
        last_used_at=row.last_used_at,
    )


async def revoke_token(conn: AsyncConnection, token: str, now: datetime) -> bool:
    """Revoke by access or refresh token text; True when a live token was revoked."""
    digest = token_digest(token)
    result = await conn.execute(
        update(access_tokens)
        .where(
            (access_tokens.c.token_sha256 == digest)
            | (access_tokens.c.refresh_token_sha256 == digest),
            access_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return result.rowcount > 0


async def revoke_account_tokens(conn: AsyncConnection, account_id: int, now: datetime) -> int:
    """Revoke every live token of an account (its password changed); how many there were."""
    result = await conn.execute(
        update(access_tokens)
        .where(access_tokens.c.account_id == account_id, access_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount


_TOKEN_USED = (
    update(access_tokens)
    .where(access_tokens.c.id == bindparam("token"))
    .values(last_used_at=bindparam("now"))
)
_ACCOUNT_ACTIVE = (
    update(accounts)
    .where(accounts.c.id == bindparam("account"))
    .values(last_active_at=bindparam("now"))
)


async def record_uses(conn: AsyncConnection, uses: list[tuple[Grant, datetime]]) -> None:
    """Note when tokens (and so their accounts) were last active, each at most once a minute;
    one statement per table for all of them."""
    due = [(grant, now) for grant, now in uses if grant.needs_recording(now)]
    if not due:
        return
    await conn.execute(_TOKEN_USED, [{"token": g.token_id, "now": now} for g, now in due])
    active = [{"account": g.account.id, "now": now} for g, now in due if g.account is not None]
    if active:
        await conn.execute(_ACCOUNT_ACTIVE, active)


@dataclass(frozen=True)
class AuthorisedApp:
    """A live token of a user, with the application it was issued to (None: made by
    `kith token create`), for the user's list of authorised apps."""

    token_id: int
    name: str
    website: str | None
    client_id: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None


async def authorised_apps(
    conn: AsyncConnection, account_id: int, now: datetime
) -> list[AuthorisedApp]:
    """The user's live tokens (not revoked, not expired), newest first."""
    rows = await conn.execute(
        select(
            access_tokens.c.id,
            access_tokens.c.name,
            access_tokens.c.scopes,
            access_tokens.c.created_at,
            access_tokens.c.last_used_at,
            oauth_applications.c.name.label("app_name"),
            oauth_applications.c.website,
            oauth_applications.c.client_id,
        )
        .outerjoin(oauth_applications, oauth_applications.c.id == access_tokens.c.application_id)
        .where(
            access_tokens.c.account_id == account_id,
            access_tokens.c.revoked_at.is_(None),
            (access_tokens.c.expires_at.is_(None)) | (access_tokens.c.expires_at > now),
        )
        .order_by(access_tokens.c.id.desc())
    )
    return [
        AuthorisedApp(
            token_id=row.id,
            name=row.app_name or row.name or "A token without an application",
            website=row.website,
            client_id=row.client_id,
            scopes=tuple(row.scopes.split()),
            created_at=row.created_at,
            last_used_at=row.last_used_at,
        )
        for row in rows
    ]


async def revoke_token_of(
    conn: AsyncConnection, account_id: int, token_id: int, now: datetime
) -> bool:
    """Revoke one of the user's own live tokens; False when it is not theirs or not live."""
    result = await conn.execute(
        update(access_tokens)
        .where(
            access_tokens.c.id == token_id,
            access_tokens.c.account_id == account_id,
            access_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return result.rowcount > 0
