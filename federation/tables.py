"""The federation package's tables: remote actors and keys, the inbox log, the delivery queue.

Its own MetaData; the server's migrations include it (server.storage.schema.target_metadata).
Timestamps are timezone-aware; SQLite hands them back naive, so readers go through `utc()`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

URL_LENGTH_MAX = 2048
HOST_LENGTH_MAX = 255


def _when(name: str, nullable: bool = True) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def utc(moment: datetime | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite returns naive ones)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# What we know of a remote actor at the transport level: where to deliver, and its document.
remote_actors = Table(
    "remote_actors",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("uri", String(URL_LENGTH_MAX), nullable=False, unique=True),
    Column("host", String(HOST_LENGTH_MAX), nullable=False, index=True),
    Column("inbox_url", String(URL_LENGTH_MAX), nullable=False),
    Column("shared_inbox_url", String(URL_LENGTH_MAX), nullable=True),
    Column("document", Text, nullable=False),
    _when("fetched_at", nullable=False),
    _when("gone_at"),
)

# Public keys of remote actors, by key id (`…#main-key`, GoToSocial's `…/main-key`, Multikeys).
remote_keys = Table(
    "remote_keys",
    metadata,
    Column("key_id", String(URL_LENGTH_MAX), primary_key=True),
    Column("owner_uri", String(URL_LENGTH_MAX), nullable=False, index=True),
    Column("algorithm", String(16), nullable=False),  # "rsa" or "ed25519"
    Column("public_key", Text, nullable=False),  # SPKI PEM, or the multibase Ed25519 key
    _when("fetched_at", nullable=False),
)

# Every verified activity, once (the unique activity id is the de-duplication), then processed.
inbox_items = Table(
    "inbox_items",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("activity_id", String(URL_LENGTH_MAX), nullable=False, unique=True),
    Column("activity_type", String(64), nullable=False),
    Column("actor_uri", String(URL_LENGTH_MAX), nullable=False),
    Column("signer_key_id", String(URL_LENGTH_MAX), nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", SmallInteger, nullable=False),
    _when("received_at", nullable=False),
    _when("next_attempt_at", nullable=False),
    _when("locked_until"),
    _when("finished_at"),
    Column("last_error", Text, nullable=True),
    Index("ix_inbox_items_due", "state", "next_attempt_at"),
)

# One row per (activity, inbox): the transactional outbox that delivery workers drain.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("activity_id", String(URL_LENGTH_MAX), nullable=False),
    Column("inbox_url", String(URL_LENGTH_MAX), nullable=False),
    Column("host", String(HOST_LENGTH_MAX), nullable=False),
    Column("signer_uri", String(URL_LENGTH_MAX), nullable=False),
    Column("body", Text, nullable=False),
    # Lower goes first: private messages and payments before bulk public fan-out.
    Column("priority", SmallInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", SmallInteger, nullable=False),
    _when("created_at", nullable=False),
    _when("next_attempt_at", nullable=False),
    _when("locked_until"),
    _when("finished_at"),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    # Sent with `Prefer: return=representation`: the peer may answer in the response.
    Column("wants_answer", Boolean, nullable=False, server_default=false()),
    Index("uq_deliveries_activity_inbox", "activity_id", "inbox_url", unique=True),
    Index("ix_deliveries_due", "state", "priority", "next_attempt_at"),
)

# Per-host delivery health and preferences.
hosts = Table(
    "hosts",
    metadata,
    Column("host", String(HOST_LENGTH_MAX), primary_key=True),
    Column("is_unavailable", Boolean, nullable=False),
    Column("failure_days", SmallInteger, nullable=False),
    _when("first_failure_at"),
    _when("last_failure_at"),
    _when("last_success_at"),
    Column("signature_scheme", String(16), nullable=True),  # "cavage" or "rfc9421" once learnt
)
