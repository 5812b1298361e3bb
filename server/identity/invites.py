"""Invitations to sign up: unguessable codes, optionally limited in uses and time, revocable.

An invite admits its holder in every registration mode but "closed", and skips approval
(as Mastodon's do). Redeeming one is a single conditional UPDATE, so two sign-ups racing for
its last use cannot both have it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.storage.ids import new_id
from server.storage.tables import invites

# 15 random bytes: 120 bits, 20 URL-safe characters; nobody guesses one.
_CODE_BYTES = 15
CODE_LENGTH_MAX = 64
_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")
VALID, EXPIRED, USED_UP, REVOKED = "valid", "expired", "used up", "revoked"


class InviteError(ValueError):
    """An invite that cannot be made or changed as asked, with the reason."""


@dataclass(frozen=True)
class Invite:
    """One invite as stored."""

    id: int
    code: str
    created_by_id: int | None
    comment: str | None
    max_uses: int | None
    uses: int
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    def state(self, now: datetime) -> str:
        """valid, expired, used up or revoked (the first reason it cannot be used)."""
        if self.revoked_at is not None:
            return REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return EXPIRED
        if self.max_uses is not None and self.uses >= self.max_uses:
            return USED_UP
        return VALID


def _usable(now: datetime) -> ColumnElement[bool]:
    return and_(
        invites.c.revoked_at.is_(None),
        or_(invites.c.expires_at.is_(None), invites.c.expires_at > now),
        or_(invites.c.max_uses.is_(None), invites.c.uses < invites.c.max_uses),
    )


def is_code(text: str) -> bool:
    """Whether the text could be an invite code at all (others are not looked up)."""
    return bool(_CODE.fullmatch(text))


async def create_invite(
    conn: AsyncConnection,
    now: datetime,
    max_uses: int | None = None,
    expires_at: datetime | None = None,
    comment: str | None = None,
    created_by_id: int | None = None,
) -> Invite:
    """A new invite with a fresh random code."""
    if max_uses is not None and max_uses < 1:
        raise InviteError("an invite admits at least one sign-up")
    if expires_at is not None and expires_at <= now:
        raise InviteError("an invite must expire in the future")
    values = {
        "id": new_id(now),
        "code": secrets.token_urlsafe(_CODE_BYTES),
        "created_by_id": created_by_id,
        "comment": comment,
        "max_uses": max_uses,
        "uses": 0,
        "expires_at": expires_at,
        "revoked_at": None,
        "created_at": now,
    }
    await conn.execute(invites.insert().values(values))
    return Invite(**values)


async def invite_by_code(conn: AsyncConnection, code: str) -> Invite | None:
    """The invite with this code, whatever its state."""
    if not is_code(code):
        return None
    row = (await conn.execute(select(invites).where(invites.c.code == code))).first()
    return Invite(**row._mapping) if row else None


async def invite_by_id(conn: AsyncConnection, invite_id: int) -> Invite | None:
    row = (await conn.execute(select(invites).where(invites.c.id == invite_id))).first()
    return Invite(**row._mapping) if row else None


async def list_invites(
    conn: AsyncConnection, now: datetime, include_unusable: bool = False
) -> list[Invite]:
    """Invites, newest first: only those still usable unless `include_unusable`."""
    query = select(invites).order_by(invites.c.id.desc())
    if not include_unusable:
        query = query.where(_usable(now))
    return [Invite(**row._mapping) for row in await conn.execute(query)]


async def revoke_invite(conn: AsyncConnection, code: str, now: datetime) -> Invite:
    """Revoke an invite so it admits nobody more; sign-ups it already admitted stay."""
    found = await invite_by_code(conn, code)
    if found is None:
        raise InviteError(f"no invite {code!r}")
    if found.revoked_at is not None:
        raise InviteError(f"the invite {code!r} is already revoked")
    await conn.execute(update(invites).where(invites.c.id == found.id).values(revoked_at=now))
    return Invite(**{**found.__dict__, "revoked_at": now})


async def redeem(conn: AsyncConnection, code: str, now: datetime) -> Invite | None:
    """Count one use of the invite if it is usable now; None (and nothing changed) if not."""
    if not is_code(code):
        return None
    result = await conn.execute(
        update(invites).where(invites.c.code == code, _usable(now)).values(uses=invites.c.uses + 1)
    )
    if result.rowcount != 1:
        return None
    return await invite_by_code(conn, code)
