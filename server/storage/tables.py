"""The server package's tables: accounts (local and remote), keys, tokens, the social graph."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
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
    Column("username_key", String(USERNAME_LENGTH_MAX), nullable=False),
    # '' for local accounts; the actor's host[:port] for remote ones.
    Column("domain", String(255), nullable=False, server_default=""),
    # Remote accounts only: the actor id, its profile page, and its followers collection
    # (to recognise followers-only addressing).
    Column("uri", String(2048), nullable=True, unique=True),
    Column("url", String(2048), nullable=True),
    Column("followers_url", String(2048), nullable=True),
    Column("also_known_as", Text, nullable=True),  # JSON list of actor ids
    Column("moved_to_uri", String(2048), nullable=True),
    Column("fetched_at", UTCDateTime, nullable=True),
    Column("actor_type", String(16), nullable=False),
    Column("is_instance_actor", Boolean, nullable=False, default=False),
    Column("display_name", String(100), nullable=False, default=""),
    # Local: what the user typed. Remote: the actor's summary, sanitised HTML.
    Column("note", Text, nullable=False, default=""),
    Column("is_locked", Boolean, nullable=False, default=False),
    # Whether the user's read markers in chats reach the other members (off by default).
    Column("shares_read_receipts", Boolean, nullable=False, server_default=false()),
    Column("is_discoverable", Boolean, nullable=False, default=True),
    Column("is_indexable", Boolean, nullable=False, default=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("password_hash", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_active_at", UTCDateTime, nullable=True),
    Column("deleted_at", UTCDateTime, nullable=True),
    # Profile metadata ("fields"): a JSON list of [name, value] pairs as the user typed them.
    Column("profile_fields", Text, nullable=True),
    # Moderation (server/moderation.py): a suspended account cannot sign in, use its tokens,
    # pay or be paid, and a remote one's activities are dropped; a silenced one is kept off
    # public timelines and its follows need approval.
    Column("suspended_at", UTCDateTime, nullable=True),
    Column("silenced_at", UTCDateTime, nullable=True),
    # Registration (server/identity/registration.py): an optional email address, stored in
    # lower case and unique when present; `approved` is false while a sign-up awaits an
    # administrator (it cannot sign in or use its tokens until then).
    Column("email", String(320), nullable=True),
    # No Python-side default: inserts written for older revisions must not name the column.
    Column("approved", Boolean, nullable=False, server_default=true()),
    # Local accounts: the profile picture's file under media/ (server/media.py's `<token>.<ext>`,
    # served as /media/NAME while this names it); None shows the default picture.
    Column("avatar_file", String(64), nullable=True, index=True),
    # Local names are unique ignoring case; remote accounts are unique by `uri`.
    Index(
        "uq_accounts_local_username",
        "username_key",
        unique=True,
        sqlite_where=text("domain = ''"),
        postgresql_where=text("domain = ''"),
    ),
    Index("ix_accounts_username_key_domain", "username_key", "domain"),
    Index("uq_accounts_email", "email", unique=True),
)

# Domain blocks as Mastodon has them: severity "silence", "suspend" or "noop" (only the
# flags); `reject_media` is kept for media handling. Config's blocked_domains add suspensions.
domain_blocks = Table(
    "domain_blocks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("domain", String(255), nullable=False, unique=True),
    Column("severity", String(16), nullable=False),
    Column("reject_media", Boolean, nullable=False, default=False),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Every moderation action: who ("cli" or "admin:<username>"), what, on what, why, when.
moderation_log = Table(
    "moderation_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("actor", String(300), nullable=False),
    Column("action", String(40), nullable=False),
    Column("target", String(2048), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Local accounts' keys, kept apart from `accounts` so reading a profile never loads a private
# key. (Remote actors' public keys belong to federation: `remote_keys`.)
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
    # The Ed25519 key's id in the actor document (`#ed25519-key`, then `#ed25519-key-2`…
    # after rotations): a new key gets a new id, so older proofs still name theirs.
    Column("ed25519_fragment", String(64), nullable=False, server_default="ed25519-key"),
)

# Ed25519 keys an account signed with before a rotation: still published (assertionMethod),
# so receipts and other proofs they made keep verifying; never used to sign again.
retired_keys = Table(
    "retired_keys",
    metadata,
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("fragment", String(64), primary_key=True),
    Column("ed25519_public", LargeBinary(32), nullable=False),
    Column("retired_at", UTCDateTime, nullable=False),
)

# Only a SHA-256 of each token is stored: a stolen database does not hand out sessions.
# OAuth client applications (POST /api/v1/apps). The secret is kept as a digest only.
oauth_applications = Table(
    "oauth_applications",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("website", String(2048), nullable=True),
    Column("redirect_uris", Text, nullable=False),  # one per line
    Column("scopes", String(1024), nullable=False),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("client_secret_sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Authorization codes live minutes and are used once; PKCE challenge kept with them.
oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_sha256", String(64), primary_key=True),
    Column(
        "application_id",
        BigInteger,
        ForeignKey("oauth_applications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("account_id", BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("scopes", String(1024), nullable=False),
    Column("code_challenge", String(128), nullable=True),
    Column("code_challenge_method", String(16), nullable=True),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    # None for an application's own token (client_credentials grant).
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column(
        "application_id",
        BigInteger,
        ForeignKey("oauth_applications.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("refresh_token_sha256", String(64), nullable=True, unique=True),
    Column("scopes", String(1024), nullable=False),
    Column("name", String(100), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
)

# --- the social graph and posts (the federation issue) -------------------------------------

# Statuses: local posts, remote posts we received or fetched, and boosts (`reblog_of_id`).
statuses = Table(
    "statuses",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("uri", String(2048), nullable=False, unique=True),
    Column("url", String(2048), nullable=True),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "in_reply_to_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    Column("in_reply_to_uri", String(2048), nullable=True),
    Column(
        "reblog_of_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    # Sanitised HTML for remote posts; rendered from `text` for local ones.
    Column("content", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("spoiler_text", Text, nullable=False),
    Column("sensitive", Boolean, nullable=False),
    Column("visibility", String(16), nullable=False),
    Column("language", String(16), nullable=True),
    # FEP-7888 `context` (Mastodon's `conversation`): groups a thread across servers.
    Column("context_uri", String(2048), nullable=True, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("edited_at", UTCDateTime, nullable=True),
    Index("ix_statuses_account_id_id", "account_id", "id"),
    Index("uq_statuses_account_id_reblog_of_id", "account_id", "reblog_of_id", unique=True),
)

# Who a status mentions; `silent` marks addressed-but-untagged actors (Mastodon's "limited").
mentions = Table(
    "mentions",
    metadata,
    Column(
        "status_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    Column("silent", Boolean, nullable=False),
)

status_tags = Table(
    "status_tags",
    metadata,
    Column(
        "status_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(255), primary_key=True, index=True),
)


def _edge(name: str, *extra: Column) -> Table:
    """An account→account (or account→status) relation with the activity that made it."""
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column(
            "account_id",
            BigInteger,
            ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        *extra,
        Column("uri", String(2048), nullable=True, unique=True),
        Column("created_at", UTCDateTime, nullable=False),
    )


def _target_account() -> Column:
    return Column(
        "target_account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


follows = _edge(
    "follows",
    _target_account(),
    # "requested" until the target (or its server) accepts; then "accepted".
    Column("state", String(16), nullable=False),
    Column("show_reblogs", Boolean, nullable=False),
    Column("notify", Boolean, nullable=False),
    UniqueConstraint("account_id", "target_account_id"),
)

blocks = _edge("blocks", _target_account(), UniqueConstraint("account_id", "target_account_id"))

favourites = _edge(
    "favourites",
    Column(
        "status_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    UniqueConstraint("account_id", "status_id"),
)

# Reports (remote `Flag`s now; local reports with the moderation issue).
reports = _edge(
    "reports",
    _target_account(),
    Column("status_uris", Text, nullable=False),  # JSON list
    Column("comment", Text, nullable=False),
    # Moderation (server/social/reports.py): Mastodon's category; when an operator forwarded it as a
    # Flag to the reported account's server, and when it was resolved.
    Column("category", String(16), nullable=False, server_default="other"),
    Column("forwarded_at", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
)

# Objects deleted before we saw them created (or after): a later Create must not revive them.
tombstones = Table(
    "tombstones",
    metadata,
    Column("uri", String(2048), primary_key=True),
    Column("account_uri", String(2048), nullable=False),
    Column("deleted_at", UTCDateTime, nullable=False),
)

# --- the client API (issue: client API) -----------------------------------------------------

bookmarks = _edge(
    "bookmarks",
    Column(
        "status_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    UniqueConstraint("account_id", "status_id"),
)

mutes = _edge(
    "mutes",
    _target_account(),
    Column("hide_notifications", Boolean, nullable=False),
    # None: until unmuted. Expired mutes are deleted by a sweep (server.social.mutes).
    Column("expires_at", UTCDateTime, nullable=True, index=True),
    UniqueConstraint("account_id", "target_account_id"),
)

# Home timelines, materialised on write (fan-out): a read is one index range scan.
home_feed = Table(
    "home_feed",
    metadata,
    Column(
        "account_id", BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    Column(
        "status_id", BigInteger, ForeignKey("statuses.id", ondelete="CASCADE"), primary_key=True
    ),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "from_account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # mention, status, reblog, follow, follow_request, favourite, update
    Column("type", String(32), nullable=False),
    Column("status_id", BigInteger, ForeignKey("statuses.id", ondelete="CASCADE"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_notifications_account_id_id", "account_id", "id"),
    Index(
        "uq_notifications_event",
        "account_id",
        "type",
        "from_account_id",
        "status_id",
        unique=True,
    ),
)

# Direct-message threads per local account (Mastodon's `conversations`).
conversations = Table(
    "conversations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("context_uri", String(2048), nullable=False),
    Column(
        "last_status_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("unread", Boolean, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("account_id", "context_uri"),
    Index("ix_conversations_account_id_updated_at", "account_id", "updated_at"),
)

# Chats (server/social/chats.py): every direct-message thread this node holds, keyed by its
# FEP-7888 context, with its members (local and remote) and, for groups, a name. The owner
# (the creator) alone may rename it or remove members.
chats = Table(
    "chats",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("context_uri", String(2048), nullable=False, unique=True),
    Column("owner_account_id", BigInteger, ForeignKey("accounts.id", ondelete="SET NULL")),
    Column("name", String(100), nullable=True),
    Column("is_group", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Chat messages about a payment request or transfer (the chat shows its live state).
chat_payments = Table(
    "chat_payments",
    metadata,
    Column(
        "status_id", BigInteger, ForeignKey("statuses.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("payment_uri", String(2048), nullable=False, index=True),
)

chat_members = Table(
    "chat_members",
    metadata,
    Column("chat_id", BigInteger, ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    Column("joined_at", UTCDateTime, nullable=False),
    # Set when the member left or was removed; cleared when added again.
    Column("left_at", UTCDateTime, nullable=True),
    # The newest message the member has read, as its node told us (read receipts, when both
    # the reader and the viewer share them).
    Column("read_up_to_id", BigInteger, nullable=True),
)

markers = Table(
    "markers",
    metadata,
    Column(
        "account_id", BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("timeline", String(32), primary_key=True),
    Column("last_read_id", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The text of a post before each edit (GET /api/v1/statuses/:id/history).
status_edits = Table(
    "status_edits",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column(
        "status_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("content", Text, nullable=False),
    Column("spoiler_text", Text, nullable=False),
    Column("sensitive", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Idempotency-Key of status creation: the same key returns the same status.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column(
        "account_id", BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("key", String(255), primary_key=True),
    Column("status_id", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Statuses an account features on its profile (Mastodon's pins; the `featured` collection).
status_pins = Table(
    "status_pins",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column(
        "status_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("account_id", "status_id"),
)

# Per-account counters, kept exact by triggers (migration 0006) on every write to statuses and
# follows: counting an account's posts on every render would cost as much as it has posts.
account_stats = Table(
    "account_stats",
    metadata,
    Column("account_id", BigInteger, primary_key=True, autoincrement=False),
    Column("statuses_count", BigInteger, nullable=False),
    Column("followers_count", BigInteger, nullable=False),
    Column("following_count", BigInteger, nullable=False),
    Column("last_status_id", BigInteger, nullable=True),
)

# Pictures: local uploads (stored under DATA_DIR/media/ by a random token, attached to at most
# one status, by their uploader only) and remote posts' attachments (kept as references:
# `remote_url` only, nothing fetched). `meta` is the Mastodon `meta` object as JSON.
media_attachments = Table(
    "media_attachments",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column(
        "status_id",
        BigInteger,
        ForeignKey("statuses.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column("position", Integer, nullable=False, default=0),
    Column("type", String(16), nullable=False),
    Column("content_type", String(100), nullable=False),
    # Local files: `<token>.<ext>` and `<token>-small.<ext>` (None for remote attachments).
    Column("file_name", String(100), nullable=True, unique=True),
    Column("preview_name", String(100), nullable=True),
    Column("remote_url", String(2048), nullable=True),
    Column("description", Text, nullable=True),
    Column("blurhash", String(100), nullable=True),
    Column("meta", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_media_attachments_account_id_status_id", "account_id", "status_id"),
)

# Invitations to sign up (`kith invite create`): the code is random and unguessable; an invite
# admits up to `max_uses` sign-ups (None: no limit) until `expires_at` (None: never) unless
# revoked. `created_by_id` is None for the operator's own (CLI) invites.
invites = Table(
    "invites",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("code", String(64), nullable=False, unique=True),
    Column(
        "created_by_id", BigInteger, ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True
    ),
    Column("comment", Text, nullable=True),
    Column("max_uses", Integer, nullable=True),
    Column("uses", Integer, nullable=False, default=0),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# How an account signed up through POST /api/v1/accounts: the invite used, the application,
# the reason given for approval, the locale and the address it came from (for moderators, as
# Mastodon's admin account shows them).
sign_ups = Table(
    "sign_ups",
    metadata,
    Column(
        "account_id", BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    Column(
        "invite_id",
        BigInteger,
        ForeignKey("invites.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    Column(
        "application_id",
        BigInteger,
        ForeignKey("oauth_applications.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("reason", Text, nullable=True),
    Column("locale", String(16), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Password reset tokens sent by email: single-use, short-lived, stored as SHA-256 digests.
password_resets = Table(
    "password_resets",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

# Browser sessions of the web client (server/web/sessions.py): the cookie's random id is kept
# only as a SHA-256 digest, mapped to the access token the node's own OAuth flow issued to the
# web client for the user (the token's text is never kept: the session stands for it).
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "token_id",
        BigInteger,
        ForeignKey("access_tokens.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)
