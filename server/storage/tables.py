"""The server package's tables: local accounts, their keys, and access tokens."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from server.storage.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

USERNAME_LENGTH_MAX = 30

accounts = Table(
    "accounts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    # As typed at sign-up; `username_key` (lower case) is what makes names unique.
    Column("username", String(USERNAME_LENGTH_MAX), nullable=False),
    Column("username_key", String(USERNAME_LENGTH_MAX), nullable=False, unique=True),
    Column("actor_type", String(16), nullable=False),
    Column("is_instance_actor", Boolean, nullable=False, default=False),
    Column("display_name", String(100), nullable=False, default=""),
    Column("note", Text, nullable=False, default=""),
    Column("is_locked", Boolean, nullable=False, default=False),
    Column("is_discoverable", Boolean, nullable=False, default=True),
    Column("is_indexable", Boolean, nullable=False, default=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("password_hash", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_active_at", UTCDateTime, nullable=True),
    Column("deleted_at", UTCDateTime, nullable=True),
)

# Kept apart from `accounts` so that reading a profile never loads a private key.
account_keys = Table(
    "account_keys",
    metadata,
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("rsa_private_pem", Text, nullable=False),
    Column("rsa_public_pem", Text, nullable=False),
    Column("ed25519_seed", LargeBinary(32), nullable=False),
    Column("ed25519_public", LargeBinary(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Only a SHA-256 of each token is stored: a stolen database does not hand out sessions.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("scopes", String(1024), nullable=False),
    Column("name", String(100), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
)
