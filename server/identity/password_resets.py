"""Password resets: single-use tokens that live an hour, stored as SHA-256 digests only.

A reset is asked for by email address; whether an account has that address is never told
(the API answers the same either way, and the work happens after the answer). Using a token
changes the password, revokes every token of the account and ends its other resets.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.identity.accounts import Account, get_account
from server.identity.registration import account_by_email
from server.identity.tokens import revoke_account_tokens, token_digest
from server.storage.tables import accounts, oauth_codes, password_resets

RESET_LIFETIME = timedelta(hours=1)
TOKEN_LENGTH_MAX = 128


@dataclass(frozen=True)
class IssuedReset:
    """A reset token for an account: its text exists only here and in the email."""

    account: Account
    token: str
    expires_at: datetime


async def issue_reset(conn: AsyncConnection, email: str, now: datetime) -> IssuedReset | None:
    """A reset token for the live local account with this address; None when there is none
    (deleted accounts included: their owners cannot get back in this way)."""
    account = await account_by_email(conn, email)
    if account is None or account.is_deleted or account.is_instance_actor:
        return None
    token = secrets.token_urlsafe(32)
    expires_at = now + RESET_LIFETIME
    await conn.execute(
        password_resets.insert().values(
            token_sha256=token_digest(token),
            account_id=account.id,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return IssuedReset(account, token, expires_at)


async def reset_is_usable(conn: AsyncConnection, token: str, now: datetime) -> bool:
    """Whether the token may still be used (for showing the form before it is filled in)."""
    if not token or len(token) > TOKEN_LENGTH_MAX:
        return False
    row = (
        await conn.execute(
            select(password_resets.c.expires_at).where(
                password_resets.c.token_sha256 == token_digest(token),
                password_resets.c.used_at.is_(None),
            )
        )
    ).first()
    return row is not None and row.expires_at > now


async def use_reset(
    conn: AsyncConnection, token: str, password_hash: str, now: datetime
) -> Account | None:
    """Set the new password with a live token (used once: a second use finds nothing);
    None when the token is unknown, used or expired, and then nothing changes."""
    if not token or len(token) > TOKEN_LENGTH_MAX:
        return None
    digest = token_digest(token)
    claimed = await conn.execute(
        update(password_resets)
        .where(
            password_resets.c.token_sha256 == digest,
            password_resets.c.used_at.is_(None),
            password_resets.c.expires_at > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        return None
    account_id = await conn.scalar(
        select(password_resets.c.account_id).where(password_resets.c.token_sha256 == digest)
    )
    account = await get_account(conn, account_id)
    if account is None or account.is_deleted:
        return None
    await set_password(conn, account, password_hash, now)
    return account


async def set_password(
    conn: AsyncConnection, account: Account, password_hash: str, now: datetime
) -> int:
    """Change an account's password and sign it out everywhere: every token revoked, pending
    authorization codes and password resets dropped. Returns how many tokens were revoked."""
    await conn.execute(
        update(accounts).where(accounts.c.id == account.id).values(password_hash=password_hash)
    )
    await conn.execute(delete(oauth_codes).where(oauth_codes.c.account_id == account.id))
    await conn.execute(
        delete(password_resets).where(
            password_resets.c.account_id == account.id, password_resets.c.used_at.is_(None)
        )
    )
    return await revoke_account_tokens(conn, account.id, now)


async def forget_old_resets(conn: AsyncConnection, now: datetime) -> int:
    """Delete resets that ended over a day ago (used or expired); how many."""
    result = await conn.execute(
        delete(password_resets).where(password_resets.c.expires_at < now - timedelta(days=1))
    )
    return result.rowcount
