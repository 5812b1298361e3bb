"""Local accounts and the instance actor: creation, lookup and counts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.actors import ED25519_KEY_FRAGMENT
from server.identity.keys import ActorKeys, generate_ed25519_key
from server.identity.passwords import hash_password
from server.storage.ids import new_id
from server.storage.tables import USERNAME_LENGTH_MAX, account_keys, accounts, retired_keys

# Mastodon's rule for local names: letters, digits and underscores, compared without case.
_USERNAME = re.compile(r"[A-Za-z0-9_]+")
# The instance actor's row key: a dot can never appear in a user's name, so no clash.
INSTANCE_ACTOR_KEY = "instance.actor"


class InvalidUsername(ValueError):
    """A username that breaks the naming rules."""


class UsernameTaken(ValueError):
    """Another account already has this name (ignoring case)."""


@dataclass(frozen=True)
class Account:
    """A local actor as the rest of the node sees it (no secrets)."""

    id: int
    username: str
    domain: str
    actor_type: str
    is_instance_actor: bool
    display_name: str
    note: str
    is_locked: bool
    is_discoverable: bool
    is_indexable: bool
    is_admin: bool
    has_password: bool
    created_at: datetime
    last_active_at: datetime | None
    deleted_at: datetime | None
    uri: str | None = None
    url: str | None = None
    followers_url: str | None = None
    also_known_as: str | None = None
    moved_to_uri: str | None = None
    fetched_at: datetime | None = None
    profile_fields: str | None = None  # JSON list of [name, value] pairs
    suspended_at: datetime | None = None  # moderation: see server/moderation.py
    silenced_at: datetime | None = None
    email: str | None = None  # registration: see server/identity/registration.py
    approved: bool = True
    avatar_file: str | None = None  # a local profile picture under media/ (server/media.py)

    @property
    def is_local(self) -> bool:
        return self.domain == ""

    @property
    def acct(self) -> str:
        """Mastodon's `acct`: the bare name for local accounts, name@domain for remote ones."""
        return self.username if self.is_local else f"{self.username}@{self.domain}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def is_bot(self) -> bool:
        return self.actor_type == "Service"

    @property
    def is_pending(self) -> bool:
        """A sign-up waiting for an administrator's approval (it cannot sign in yet)."""
        return not self.approved and self.is_local


@dataclass(frozen=True)
class PublicKeys:
    """The public halves of an account's keys, for its actor document."""

    rsa_public_pem: str
    ed25519_public: bytes
    # Every Ed25519 key published, (fragment, public key), the current one first.
    ed25519_keys: tuple[tuple[str, bytes], ...] = ()


_COLUMNS = [c for c in accounts.c if c.name not in ("password_hash", "username_key")]


def validate_username(username: str) -> str:
    """Return the name if it follows the rules; raise InvalidUsername saying which rule broke."""
    if not username:
        raise InvalidUsername("a username cannot be empty")
    if len(username) > USERNAME_LENGTH_MAX:
        raise InvalidUsername(f"a username has at most {USERNAME_LENGTH_MAX} characters")
    if not _USERNAME.fullmatch(username):
        raise InvalidUsername("a username may only hold letters a-z, digits 0-9 and underscores")
    return username


async def create_account(
    conn: AsyncConnection,
    username: str,
    keys: ActorKeys,
    now: datetime,
    password: str | None = None,
    display_name: str = "",
    is_admin: bool = False,
    is_bot: bool = False,
    email: str | None = None,
    approved: bool = True,
    password_hash: str | None = None,
) -> Account:
    """Store a new local account with its keys. `password=None` means no password login
    (unless `password_hash` is given: hashed beforehand, off the event loop). `email` is
    stored as given (see registration.normalize_email); `approved=False` makes it pending."""
    validate_username(username)
    if password is not None:
        password_hash = hash_password(password)
    values = {
        "id": new_id(now),
        "username": username,
        "username_key": username.lower(),
        "actor_type": "Service" if is_bot else "Person",
        "is_instance_actor": False,
        "display_name": display_name,
        "is_admin": is_admin,
        "password_hash": password_hash,
        "email": email,
        "approved": approved,
    }
    return await _insert_account(conn, values, keys, now)


async def ensure_instance_actor(conn: AsyncConnection, keys: ActorKeys, now: datetime) -> Account:
    """The instance actor, created with `keys` the first time (safe when processes race)."""
    existing = await instance_actor(conn)
    if existing is not None:
        return existing
    values = {
        "id": new_id(now),
        "username": INSTANCE_ACTOR_KEY,
        "username_key": INSTANCE_ACTOR_KEY,
        "actor_type": "Application",
        "is_instance_actor": True,
        "display_name": "",
        "is_admin": False,
        "is_locked": True,
        "is_discoverable": False,
        "password_hash": None,
    }
    try:
        async with conn.begin_nested():
            return await _insert_account(conn, values, keys, now)
    except UsernameTaken:
        found = await instance_actor(conn)
        assert found is not None
        return found


async def _insert_account(
    conn: AsyncConnection, values: dict, keys: ActorKeys, now: datetime
) -> Account:
    row = {
        "display_name": "",
        "note": "",
        "is_locked": False,
        "is_discoverable": True,
        "is_indexable": False,
        "created_at": now,
        **values,
    }
    try:
        await conn.execute(insert(accounts).values(row))
    except IntegrityError:
        raise UsernameTaken(f"the username {values['username']!r} is taken") from None
    await conn.execute(
        insert(account_keys).values(
            account_id=row["id"],
            rsa_private_pem=keys.rsa_private_pem,
            rsa_public_pem=keys.rsa_public_pem,
            ed25519_seed=keys.ed25519_seed,
            ed25519_public=keys.ed25519_public,
            created_at=now,
        )
    )
    found = await get_account(conn, row["id"])
    assert found is not None
    return found


_ACCOUNT_FIELDS = tuple(field.name for field in fields(Account))


_SELECTED = {c.name: c for c in _COLUMNS} | {
    "has_password": accounts.c.password_hash.is_not(None).label("has_password")
}
# In the order of Account's fields, so that hot paths can build one from a row by position.
_SELECT_ACCOUNTS = select(*(_SELECTED[name] for name in _ACCOUNT_FIELDS))


def select_accounts() -> Select:
    """A query for Account rows (every column but the secrets).

    Built once: statements are immutable, and building this one costs more than running it.
    """
    return _SELECT_ACCOUNTS


# The hottest lookups, built once and run with parameters (see `select_accounts`); on
# SQLite past SQLAlchemy's execution machinery (`kith_direct`: server/storage/direct.py).
_BY_USERNAME = _SELECT_ACCOUNTS.where(
    accounts.c.username_key == bindparam("key"),
    accounts.c.domain == "",
    accounts.c.is_instance_actor.is_(False),
).execution_options(kith_direct=True)
_BY_ID = _SELECT_ACCOUNTS.where(accounts.c.id == bindparam("id")).execution_options(
    kith_direct=True
)
BY_URI = _SELECT_ACCOUNTS.where(accounts.c.uri == bindparam("uri")).execution_options(
    kith_direct=True
)


def account_from_selected_row(row: Sequence[Any]) -> Account:
    """An Account from a row of `select_accounts()` exactly, by position (the hot path)."""
    return Account(*row)


def account_from_row(row: object) -> Account:
    """An Account from a row selected with `select_accounts()` (extra columns are ignored)."""
    mapping = row._mapping  # type: ignore[attr-defined]
    return Account(**{name: mapping[name] for name in _ACCOUNT_FIELDS if name in mapping})


async def find_account(conn: AsyncConnection, username: str) -> Account | None:
    """A local user (deleted ones too) by name, ignoring case; None if there is none.

    Names that break the naming rules cannot exist, so they are not even looked up (a NUL
    byte, for one, is an error on PostgreSQL). The instance actor is not a user.
    """
    if not _USERNAME.fullmatch(username) or len(username) > USERNAME_LENGTH_MAX:
        return None
    result = await conn.execute(_BY_USERNAME, {"key": username.lower()})
    row = result.first()
    return account_from_row(row) if row else None


async def get_account(conn: AsyncConnection, account_id: int) -> Account | None:
    """An account (local or remote) by id."""
    row = (await conn.execute(_BY_ID, {"id": account_id})).first()
    return account_from_row(row) if row else None


async def instance_actor(conn: AsyncConnection) -> Account | None:
    """The node's own Application actor, if it has been created."""
    result = await conn.execute(select_accounts().where(accounts.c.is_instance_actor.is_(True)))
    row = result.first()
    return account_from_row(row) if row else None


async def list_accounts(conn: AsyncConnection) -> list[Account]:
    """Every local user account (not the instance actor), oldest first."""
    result = await conn.execute(
        select_accounts()
        .where(accounts.c.is_instance_actor.is_(False), accounts.c.domain == "")
        .order_by(accounts.c.id)
    )
    return [account_from_row(row) for row in result]


async def public_keys(conn: AsyncConnection, account_id: int) -> PublicKeys:
    """The public halves of an account's keys, with the Ed25519 keys it used before."""
    row = (
        await conn.execute(
            select(
                account_keys.c.rsa_public_pem,
                account_keys.c.ed25519_public,
                account_keys.c.ed25519_fragment,
            ).where(account_keys.c.account_id == account_id)
        )
    ).one()
    retired = await conn.execute(
        select(retired_keys.c.fragment, retired_keys.c.ed25519_public)
        .where(retired_keys.c.account_id == account_id)
        .order_by(retired_keys.c.retired_at.desc())
    )
    current = (row.ed25519_fragment, bytes(row.ed25519_public))
    return PublicKeys(
        rsa_public_pem=row.rsa_public_pem,
        ed25519_public=current[1],
        ed25519_keys=(current, *((r.fragment, bytes(r.ed25519_public)) for r in retired)),
    )


@dataclass(frozen=True)
class SigningKey:
    """The Ed25519 key an account signs proofs with now: its id's fragment and its seed."""

    fragment: str
    seed: bytes = field(repr=False)


async def signing_key(conn: AsyncConnection, account_id: int) -> SigningKey:
    row = (
        await conn.execute(
            select(account_keys.c.ed25519_fragment, account_keys.c.ed25519_seed).where(
                account_keys.c.account_id == account_id
            )
        )
    ).one()
    return SigningKey(row.ed25519_fragment, bytes(row.ed25519_seed))


# How long a running process signs with the private keys it loaded: a key rotated by another
# process (`kith user rotate-key`) signs within this; the old one stays published, so what it
# signed meanwhile still verifies.
SIGNING_KEY_FRESH = timedelta(minutes=1)


async def rotate_signing_key(conn: AsyncConnection, account_id: int, now: datetime) -> str:
    """A new Ed25519 key for the account, under a new id; the old one stays published (for
    what it signed) and never signs again. Returns the new key's fragment."""
    keys = await public_keys(conn, account_id)
    old_fragment, old_public = keys.ed25519_keys[0]
    fragment = f"{ED25519_KEY_FRAGMENT}-{len(keys.ed25519_keys) + 1}"
    fresh = generate_ed25519_key()
    await conn.execute(
        insert(retired_keys).values(
            account_id=account_id, fragment=old_fragment, ed25519_public=old_public, retired_at=now
        )
    )
    await conn.execute(
        update(account_keys)
        .where(account_keys.c.account_id == account_id)
        .values(ed25519_seed=fresh.seed, ed25519_public=fresh.public, ed25519_fragment=fragment)
    )
    return fragment


async def count_users(conn: AsyncConnection, active_since: datetime | None = None) -> int:
    """Live local users, optionally only those active since a moment (sign-ups waiting for
    approval are not users yet)."""
    query = (
        select(func.count())
        .select_from(accounts)
        .where(
            accounts.c.domain == "",  # not the remote accounts this node knows
            accounts.c.is_instance_actor.is_(False),
            accounts.c.deleted_at.is_(None),
            accounts.c.approved.is_(True),
        )
    )
    if active_since is not None:
        query = query.where(accounts.c.last_active_at >= active_since)
    return int((await conn.execute(query)).scalar_one())


async def password_hash_of(conn: AsyncConnection, account_id: int) -> str | None:
    """The stored password hash (None: no password login), for sign-in only."""
    row = await conn.execute(select(accounts.c.password_hash).where(accounts.c.id == account_id))
    return row.scalar_one_or_none()
