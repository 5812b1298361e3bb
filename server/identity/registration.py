"""Sign-ups through apps (POST /api/v1/accounts) and their approval by administrators.

The modes (`instance.registrations`): "open", anyone signs up; "approval", anyone may ask and
the account exists but cannot sign in or use its tokens until an admin approves it (rejecting
deletes it); "invite", only with a valid invite code; "closed", nobody. A valid invite admits
its holder in every mode but "closed", without approval (Mastodon's rule).

Input is checked as Mastodon checks it, and every problem is reported at once, per field,
with Mastodon's error codes (ERR_BLANK, ERR_INVALID, ERR_TAKEN…). Functions take
`(conn, …, now)`; the caller owns the transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server import moderation
from server.config import InstanceConfig
from server.identity.accounts import (
    Account,
    InvalidUsername,
    UsernameTaken,
    account_from_row,
    create_account,
    find_account,
    select_accounts,
    validate_username,
)
from server.identity.invites import Invite, redeem
from server.identity.keys import ActorKeys
from server.identity.passwords import PASSWORD_LENGTH_MAX, PASSWORD_LENGTH_MIN
from server.storage.tables import (
    USERNAME_LENGTH_MAX,
    account_stats,
    accounts,
    invites,
    sign_ups,
)

OPEN, APPROVAL, INVITE, CLOSED = "open", "approval", "invite", "closed"
# Mastodon's reserved names (ReservedUsernameValidator): nobody signs up as the staff.
# The operator may still create them with `kith user create`.
RESERVED_USERNAMES = frozenset(
    {"admin", "administrator", "help", "mod", "moderator", "root", "support", "webmaster"}
)
REASON_LENGTH_MAX = 420  # Mastodon's UserInviteRequest::TEXT_SIZE_LIMIT
EMAIL_LENGTH_MAX = 254  # the longest address SMTP carries (RFC 5321's path limit less <>)
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")  # Devise's email regexp
_LOCALE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}")


@dataclass(frozen=True)
class FieldError:
    """One problem with one parameter, as Mastodon's ValidationErrorFormatter reports it."""

    field: str
    error: str
    description: str


class SignUpInvalid(ValueError):
    """The sign-up's input breaks rules: every problem found, by field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__(
            "Validation failed: "
            + ", ".join(f"{e.field.replace('_', ' ').capitalize()} {e.description}" for e in errors)
        )


class RegistrationError(ValueError):
    """An approval or rejection that cannot be done (the account is not pending)."""


@dataclass(frozen=True)
class Policy:
    """The registration settings a sign-up is judged by."""

    mode: str = CLOSED
    require_email: bool = False
    require_reason: bool = False

    @classmethod
    def of(cls, instance: InstanceConfig) -> Policy:
        return cls(instance.registrations, instance.require_email, instance.require_reason)

    @property
    def enabled(self) -> bool:
        """Whether anyone may sign up without an invite (Mastodon's registrations.enabled)."""
        return self.mode in (OPEN, APPROVAL)

    @property
    def approval_required(self) -> bool:
        return self.mode == APPROVAL

    @property
    def invites_enabled(self) -> bool:
        return self.mode != CLOSED


@dataclass(frozen=True)
class SignUp:
    """What a sign-up asks for, as the client sent it."""

    username: str
    password: str
    email: str | None = None
    agreement: bool = False
    locale: str | None = None
    reason: str | None = None
    invite_code: str | None = None
    ip: str | None = None
    application_id: int | None = None


@dataclass(frozen=True)
class SignUpRecord:
    """How an account signed up, for moderators (Mastodon's Admin::Account fields)."""

    account_id: int
    invite_id: int | None
    invited_by_id: int | None
    application_id: int | None
    reason: str | None
    locale: str | None
    ip: str | None
    created_at: datetime


def normalize_email(text: str) -> str:
    """Addresses are kept in lower case, without surrounding space (as Devise keeps them)."""
    return text.strip().lower()


def refusal(policy: Policy, sign_up: SignUp) -> str | None:
    """Why the sign-up is refused before its fields are looked at (403), or None."""
    if policy.mode == CLOSED:
        return "sign-ups are closed on this server"
    if policy.mode == INVITE and not (sign_up.invite_code or "").strip():
        return "sign-ups on this server need an invite code"
    return None


def check_fields(sign_up: SignUp, policy: Policy) -> list[FieldError]:
    """Every rule the input breaks, without looking at the database."""
    errors = _username_errors(sign_up.username) + password_errors(sign_up.password)
    errors += email_errors(sign_up.email, policy.require_email)
    if not sign_up.agreement:
        errors.append(FieldError("agreement", "ERR_ACCEPTED", "must be accepted"))
    if sign_up.locale and not _LOCALE.fullmatch(sign_up.locale):
        errors.append(FieldError("locale", "ERR_INCLUSION", "is not included in the list"))
    reason = (sign_up.reason or "").strip()
    must_explain = policy.approval_required and policy.require_reason
    if must_explain and not reason and not sign_up.invite_code:
        errors.append(FieldError("reason", "ERR_BLANK", "can't be blank"))
    if len(reason) > REASON_LENGTH_MAX:
        errors.append(
            FieldError(
                "reason", "ERR_TOO_LONG", f"is too long (maximum is {REASON_LENGTH_MAX} characters)"
            )
        )
    return errors


def _username_errors(username: str) -> list[FieldError]:
    if not username.strip():
        return [FieldError("username", "ERR_BLANK", "can't be blank")]
    try:
        validate_username(username)
    except InvalidUsername as exc:
        code = "ERR_TOO_LONG" if len(username) > USERNAME_LENGTH_MAX else "ERR_INVALID"
        return [FieldError("username", code, str(exc))]
    if username.lower() in RESERVED_USERNAMES:
        return [FieldError("username", "ERR_RESERVED", "is reserved")]
    return []


def password_errors(password: str) -> list[FieldError]:
    """What is wrong with a new password (Mastodon's codes), if anything."""
    if not password:
        return [FieldError("password", "ERR_BLANK", "can't be blank")]
    if len(password) < PASSWORD_LENGTH_MIN:
        return [
            FieldError(
                "password",
                "ERR_TOO_SHORT",
                f"is too short (minimum is {PASSWORD_LENGTH_MIN} characters)",
            )
        ]
    if len(password) > PASSWORD_LENGTH_MAX:
        return [
            FieldError(
                "password",
                "ERR_TOO_LONG",
                f"is too long (maximum is {PASSWORD_LENGTH_MAX} characters)",
            )
        ]
    return []


def email_errors(email: str | None, required: bool = False) -> list[FieldError]:
    """What is wrong with an email address, if anything (Mastodon's codes)."""
    if email is None or not email.strip():
        return [FieldError("email", "ERR_BLANK", "can't be blank")] if required else []
    address = normalize_email(email)
    if len(address) > EMAIL_LENGTH_MAX:
        return [
            FieldError(
                "email", "ERR_TOO_LONG", f"is too long (maximum is {EMAIL_LENGTH_MAX} characters)"
            )
        ]
    if not _EMAIL.fullmatch(address):
        return [FieldError("email", "ERR_INVALID", "is invalid")]
    return []


async def check_taken(conn: AsyncConnection, sign_up: SignUp) -> list[FieldError]:
    """The name or address already belongs to someone (a deleted account's name too)."""
    errors = []
    if await find_account(conn, sign_up.username) is not None:
        errors.append(FieldError("username", "ERR_TAKEN", "is already taken"))
    if sign_up.email and await account_by_email(conn, sign_up.email) is not None:
        errors.append(FieldError("email", "ERR_TAKEN", "is already taken"))
    return errors


async def account_by_email(conn: AsyncConnection, email: str) -> Account | None:
    """The local account with this address (compared in lower case), if any."""
    address = normalize_email(email)
    if not address or len(address) > EMAIL_LENGTH_MAX:
        return None
    row = (await conn.execute(select_accounts().where(accounts.c.email == address))).first()
    return account_from_row(row) if row else None


async def create_sign_up(
    conn: AsyncConnection,
    sign_up: SignUp,
    policy: Policy,
    keys: ActorKeys,
    password_hash: str,
    now: datetime,
) -> tuple[Account, Invite | None]:
    """Store the account (pending in approval mode, unless invited) and how it signed up;
    SignUpInvalid, with nothing changed, when the name, address or invite is no good."""
    errors = await check_taken(conn, sign_up)
    invite = None
    if sign_up.invite_code:
        invite = await redeem(conn, sign_up.invite_code.strip(), now)
        if invite is None:
            errors.append(
                FieldError("invite_code", "ERR_INVALID", "is invalid, expired, used up or revoked")
            )
    if errors:
        raise SignUpInvalid(errors)
    try:
        account = await create_account(
            conn,
            sign_up.username,
            keys,
            now,
            email=normalize_email(sign_up.email) if sign_up.email else None,
            approved=not policy.approval_required or invite is not None,
            password_hash=password_hash,
        )
    except UsernameTaken:  # a sign-up with the same name committed in between
        raise SignUpInvalid([FieldError("username", "ERR_TAKEN", "is already taken")]) from None
    await conn.execute(
        sign_ups.insert().values(
            account_id=account.id,
            invite_id=invite.id if invite else None,
            application_id=sign_up.application_id,
            reason=(sign_up.reason or "").strip() or None,
            locale=sign_up.locale or None,
            ip=sign_up.ip,
            created_at=now,
        )
    )
    return account, invite


async def sign_up_records(
    conn: AsyncConnection, account_ids: Iterable[int]
) -> dict[int, SignUpRecord]:
    """How each of these accounts signed up (those made by `kith user create` have none)."""
    ids = list(account_ids)
    if not ids:
        return {}
    rows = await conn.execute(
        select(sign_ups, invites.c.created_by_id.label("invited_by_id"))
        .select_from(sign_ups.outerjoin(invites, invites.c.id == sign_ups.c.invite_id))
        .where(sign_ups.c.account_id.in_(ids))
    )
    return {row.account_id: SignUpRecord(**row._mapping) for row in rows}


async def pending_accounts(conn: AsyncConnection) -> list[Account]:
    """Local accounts waiting for approval, oldest first."""
    rows = await conn.execute(
        select_accounts()
        .where(accounts.c.domain == "", accounts.c.approved.is_(False))
        .order_by(accounts.c.id)
    )
    return [account_from_row(row) for row in rows]


async def count_pending(conn: AsyncConnection) -> int:
    query = select(func.count()).select_from(accounts).where(accounts.c.approved.is_(False))
    return int((await conn.execute(query)).scalar_one())


async def approve(
    conn: AsyncConnection, account: Account, who: str, now: datetime, reason: str | None = None
) -> None:
    """Let a pending account sign in and use its tokens; recorded in the audit log."""
    _check_pending(account)
    await conn.execute(update(accounts).where(accounts.c.id == account.id).values(approved=True))
    await moderation.record(conn, who, "approve", account.acct, reason, now)


async def reject(
    conn: AsyncConnection, account: Account, who: str, now: datetime, reason: str | None = None
) -> None:
    """Delete a pending account outright (it never posted or federated, so its name is free
    again, as Mastodon frees it); recorded in the audit log."""
    _check_pending(account)
    await conn.execute(delete(account_stats).where(account_stats.c.account_id == account.id))
    await conn.execute(delete(accounts).where(accounts.c.id == account.id))
    await moderation.record(conn, who, "reject", account.acct, reason, now)


def _check_pending(account: Account) -> None:
    if not account.is_pending:
        raise RegistrationError(f"{account.acct} is not waiting for approval")
