"""The client API described as OpenAPI 3.1, served at /api/openapi.json.

Each operation is one line in `OPERATIONS`; the entity schemas are what the Presenter renders.
tests/api/test_openapi.py keeps this true: every client route is listed here and every listed
operation is served, and live responses validate against the schemas declared for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server import __version__
from server.api.responses import json_body
from server.appkeys import URLS

routes = web.RouteTableDef()


def _string(nullable: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": ["string", "null"] if nullable else "string", **extra}


def _ref(name: str, nullable: bool = False) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"oneOf": [ref, {"type": "null"}]} if nullable else ref


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


_ID = _string(pattern=r"^[0-9]+$")
_TIME = _string(format="date-time")
_BOOL = {"type": "boolean"}
_INT = {"type": "integer", "minimum": 0}
_URL = _string(format="uri")
# Money: a decimal string in the currency's scale, never a JSON number.
_AMOUNT = _string(pattern=r"^-?[0-9]+(\.[0-9]+)?$")

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _object({"error": _string(), "error_description": _string()}, ("error_description",)),
    "Field": _object({"name": _string(), "value": _string(), "verified_at": _string(True)}),
    "Account": _object(
        {
            "id": _ID,
            "username": _string(),
            "acct": _string(),
            "display_name": _string(),
            "locked": _BOOL,
            "bot": _BOOL,
            "discoverable": {"type": ["boolean", "null"]},
            "group": _BOOL,
            "created_at": _TIME,
            "note": _string(),
            "url": _string(),
            "uri": _URL,
            "avatar": _URL,
            "avatar_static": _URL,
            "header": _URL,
            "header_static": _URL,
            "followers_count": _INT,
            "following_count": _INT,
            "statuses_count": _INT,
            "last_status_at": _string(True, format="date"),
            "emojis": _array({"type": "object"}),
            "fields": _array(_ref("Field")),
            "source": {"type": "object"},
            "suspended": _BOOL,
            "limited": _BOOL,
        },
        ("source", "suspended", "limited"),
    ),
    "Mention": _object({"id": _ID, "username": _string(), "acct": _string(), "url": _string()}),
    "Tag": _object({"name": _string(), "url": _URL}),
    "Status": _object(
        {
            "id": _ID,
            "uri": _string(),
            "url": _string(True),
            "created_at": _TIME,
            "edited_at": _string(True, format="date-time"),
            "account": _ref("Account"),
            "content": _string(),
            "visibility": {"enum": ["public", "unlisted", "private", "direct"]},
            "sensitive": _BOOL,
            "spoiler_text": _string(),
            "language": _string(True),
            "in_reply_to_id": {"oneOf": [_ID, {"type": "null"}]},
            "in_reply_to_account_id": {"oneOf": [_ID, {"type": "null"}]},
            "reblog": _ref("Status", nullable=True),
            "replies_count": _INT,
            "reblogs_count": _INT,
            "favourites_count": _INT,
            "favourited": _BOOL,
            "reblogged": _BOOL,
            "bookmarked": _BOOL,
            "muted": _BOOL,
            "pinned": _BOOL,
            "mentions": _array(_ref("Mention")),
            "tags": _array(_ref("Tag")),
            "emojis": _array({"type": "object"}),
            "media_attachments": _array({"type": "object"}),
            "card": {"type": ["object", "null"]},
            "poll": {"type": ["object", "null"]},
            "application": {"type": ["object", "null"]},
            "filtered": _array({"type": "object"}),
            "text": _string(True),
        },
        ("text",),
    ),
    "StatusEdit": _object(
        {
            "content": _string(),
            "spoiler_text": _string(),
            "sensitive": _BOOL,
            "created_at": _TIME,
            "account": _ref("Account"),
            "media_attachments": _array({"type": "object"}),
            "emojis": _array({"type": "object"}),
        }
    ),
    "StatusSource": _object({"id": _ID, "text": _string(), "spoiler_text": _string()}),
    "Context": _object(
        {"ancestors": _array(_ref("Status")), "descendants": _array(_ref("Status"))}
    ),
    "Relationship": _object(
        {
            "id": _ID,
            "following": _BOOL,
            "showing_reblogs": _BOOL,
            "notifying": _BOOL,
            "followed_by": _BOOL,
            "blocking": _BOOL,
            "blocked_by": _BOOL,
            "muting": _BOOL,
            "muting_notifications": _BOOL,
            "requested": _BOOL,
            "requested_by": _BOOL,
            "domain_blocking": _BOOL,
            "endorsed": _BOOL,
            "note": _string(),
        }
    ),
    "Notification": _object(
        {
            "id": _ID,
            "type": {
                "enum": [
                    "mention",
                    "status",
                    "reblog",
                    "follow",
                    "follow_request",
                    "favourite",
                    "poll",
                    "update",
                ]
            },
            "created_at": _TIME,
            "account": _ref("Account"),
            "status": _ref("Status", nullable=True),
        },
        ("status",),
    ),
    "Conversation": _object(
        {
            "id": _ID,
            "unread": _BOOL,
            "accounts": _array(_ref("Account")),
            "last_status": _ref("Status", nullable=True),
        }
    ),
    "Marker": _object({"last_read_id": _ID, "version": _INT, "updated_at": _TIME}),
    "Preferences": _object({"read_receipts": _BOOL}),
    "ChatMember": _object(
        {
            "account": _ref("Account"),
            "joined_at": _TIME,
            "last_read_id": _string(nullable=True, pattern=r"^[0-9]+$"),
        }
    ),
    "Chat": _object(
        {
            "id": _ID,
            "uri": _string(),
            "name": _string(nullable=True),
            "group": _BOOL,
            "owner_id": _string(nullable=True, pattern=r"^[0-9]+$"),
            "members": _array(_ref("ChatMember")),
            "left": _BOOL,
            "unread_count": _INT,
            "last_read_id": _string(nullable=True, pattern=r"^[0-9]+$"),
            "last_message": _ref("Status", nullable=True),
            "created_at": _TIME,
            "updated_at": _TIME,
        }
    ),
    "AdminAccount": _object(
        {
            "id": _ID,
            "username": _string(),
            "domain": _string(True),
            "created_at": _TIME,
            "email": _string(),
            "ip": _string(True),
            "locale": _string(),
            "invite_request": _string(True),
            "role": _object({"id": _string(), "name": _string()}),
            "confirmed": _BOOL,
            "approved": _BOOL,
            "disabled": _BOOL,
            "silenced": _BOOL,
            "suspended": _BOOL,
            "account": _ref("Account"),
        }
    ),
    "AdminReport": _object(
        {
            "id": _ID,
            "action_taken": _BOOL,
            "action_taken_at": _string(True, format="date-time"),
            "category": _string(),
            "comment": _string(),
            "forwarded": _BOOL,
            "created_at": _TIME,
            "account": _ref("AdminAccount"),
            "target_account": _ref("AdminAccount"),
            "status_uris": _array(_URL),
        }
    ),
    "AdminDomainBlock": _object(
        {
            "id": _ID,
            "domain": _string(),
            "created_at": _TIME,
            "severity": {"enum": ["silence", "suspend", "noop"]},
            "reject_media": _BOOL,
            "private_comment": _string(True),
        }
    ),
    "Report": _object(
        {
            "id": _ID,
            "action_taken": _BOOL,
            "action_taken_at": _string(True, format="date-time"),
            "category": _string(),
            "comment": _string(),
            "forwarded": _BOOL,
            "created_at": _TIME,
            "status_ids": _array(_ID),
            "rule_ids": _array(_ID),
            "target_account": _ref("Account"),
        }
    ),
    "Application": _object(
        {
            "name": _string(),
            "website": _string(True),
            "client_id": _string(),
            "client_secret": _string(),
            "redirect_uri": _string(),
            "redirect_uris": _array(_string()),
            "scopes": _array(_string()),
        },
        ("client_id", "client_secret", "redirect_uri", "redirect_uris", "scopes"),
    ),
    "Token": _object(
        {
            "access_token": _string(),
            "token_type": {"const": "Bearer"},
            "scope": _string(),
            "created_at": {"type": "integer"},
            "refresh_token": _string(),
            "expires_in": {"type": "integer"},
        },
        ("refresh_token", "expires_in"),
    ),
    "Instance": {"type": "object", "required": ["version"]},
    "SearchResults": _object(
        {
            "accounts": _array(_ref("Account")),
            "statuses": _array(_ref("Status")),
            "hashtags": _array({"type": "object"}),
        }
    ),
    "Object": {"type": "object"},
    "Balance": _object(
        {
            "currency": _string(),
            "balance": _AMOUNT,
            "available": _AMOUNT,
            "pending": _AMOUNT,
            "incoming": _AMOUNT,
        }
    ),
    "Wallet": _object({"balances": _array(_ref("Balance"))}),
    "PaymentRequest": _object(
        {
            "id": _ID,
            "uri": _URL,
            "direction": _string(enum=["incoming", "outgoing"]),
            "state": _string(enum=["open", "paid", "declined", "expired", "cancelled"]),
            "payee": _URL,
            "payer": _string(True),
            "amount": _AMOUNT,
            "currency": _string(),
            "note": _string(),
            "created_at": _TIME,
            "expires_at": _TIME,
            "paid_by": _string(True),
        }
    ),
    "Transfer": _object(
        {
            "id": _ID,
            "uri": _URL,
            "direction": _string(enum=["incoming", "outgoing"]),
            "state": _string(enum=["pending", "awaiting_acceptance", "completed", "rejected"]),
            "amount": _AMOUNT,
            "currency": _string(),
            "payer": _URL,
            "payee": _URL,
            "payment_request": _string(True),
            "error": {
                "oneOf": [
                    _object({"code": _string(), "reason": _string(True)}),
                    {"type": "null"},
                ]
            },
            "created_at": _TIME,
            "decided_at": _string(True, format="date-time"),
            "accept_by": _string(True, format="date-time"),
            "receipt": _object(
                {
                    "payment_request": {"type": ["object", "null"]},
                    "transfer": {"type": "object"},
                    "decision": {"type": "object"},
                    "verified": _BOOL,
                    "problems": _array(_string()),
                }
            ),
        },
        ("receipt",),
    ),
}


@dataclass(frozen=True)
class Operation:
    """One method on one path, with the scope it needs and what it answers."""

    method: str
    path: str
    summary: str
    scope: str | None = None  # None: no token needed (one is used when sent)
    response: dict[str, Any] = field(default_factory=lambda: _ref("Object"))
    params: tuple[str, ...] = ()
    paginated: bool = False
    status: int = 200


def _list(name: str) -> dict[str, Any]:
    return _array(_ref(name))


_PAGE = ("max_id", "since_id", "min_id", "limit")
_STATUS_FIELDS = (
    "status",
    "in_reply_to_id",
    "visibility",
    "spoiler_text",
    "sensitive",
    "language",
    "media_ids",
)

OPERATIONS: tuple[Operation, ...] = (
    # OAuth and apps
    Operation("POST", "/api/v1/apps", "Register a client application", None, _ref("Application")),
    Operation(
        "GET",
        "/api/v1/apps/verify_credentials",
        "The application of the token",
        "read",
        _ref("Application"),
    ),
    Operation("GET", "/oauth/authorize", "Sign-in and consent page (HTML)", response={}),
    Operation("POST", "/oauth/authorize", "Consent decision (form)", response={}, status=302),
    Operation("POST", "/oauth/token", "Obtain a token (all grants)", None, _ref("Token")),
    Operation("POST", "/oauth/revoke", "Revoke a token", None),
    Operation(
        "GET", "/.well-known/oauth-authorization-server", "RFC 8414 authorization server metadata"
    ),
    # instance
    Operation("GET", "/api/v1/instance", "Instance (v1)", None, _ref("Instance")),
    Operation("GET", "/api/v2/instance", "Instance (v2)", None, _ref("Instance")),
    Operation("GET", "/api/v1/instance/peers", "Domains this node knows", None, _array(_string())),
    Operation("GET", "/api/v1/instance/rules", "Server rules", None, _array({"type": "object"})),
    Operation("GET", "/api/v1/custom_emojis", "Custom emojis", None, _array({"type": "object"})),
    # accounts
    Operation(
        "POST",
        "/api/v1/accounts",
        "Sign up (an app's own token): a Token for the new user; 422 with `details` per field",
        "write:accounts",
        _ref("Token"),
        ("username", "email", "password", "agreement", "locale", "reason", "invite_code"),
    ),
    Operation(
        "POST",
        "/api/kith/v1/password_reset",
        "Email a password reset link to the account with this address, if any (202 always)",
        None,
        _object({}),
        ("email",),
        status=202,
    ),
    Operation(
        "POST",
        "/api/kith/v1/password_reset/confirm",
        "Set a new password with the emailed token (once, within the hour)",
        None,
        _object({}),
        ("token", "password", "password_confirmation"),
    ),
    Operation(
        "GET",
        "/api/v1/accounts/verify_credentials",
        "The signed-in account with its source",
        "read:accounts",
        _ref("Account"),
    ),
    # accounts
    Operation(
        "PATCH",
        "/api/v1/accounts/update_credentials",
        "Change one's profile (federates an Update)",
        "write:accounts",
        _ref("Account"),
        (
            "display_name",
            "note",
            "locked",
            "bot",
            "discoverable",
            "indexable",
            "fields_attributes",
            "avatar",
        ),
    ),
    Operation(
        "DELETE",
        "/api/v1/profile/avatar",
        "Remove one's profile picture (federates an Update)",
        "write:accounts",
        _ref("Account"),
    ),
    Operation(
        "GET",
        "/api/v1/accounts/lookup",
        "An account by acct (remote ones resolved)",
        None,
        _ref("Account"),
        ("acct",),
    ),
    Operation(
        "GET",
        "/api/v1/accounts/relationships",
        "Relationships with accounts",
        "read:follows",
        _list("Relationship"),
        ("id",),
    ),
    Operation(
        "GET",
        "/api/v1/accounts/search",
        "Accounts by name or handle",
        "read:accounts",
        _list("Account"),
        ("q", "limit", "offset", "resolve", "following"),
    ),
    Operation(
        "GET",
        "/api/v1/accounts/familiar_followers",
        "Followed accounts that also follow each account",
        "read:follows",
        _array(_object({"id": _ID, "accounts": _list("Account")})),
        ("id",),
    ),
    Operation("GET", "/api/v1/accounts/{id}", "One account", None, _ref("Account")),
    Operation(
        "GET",
        "/api/v1/accounts/{id}/featured_tags",
        "An account's featured hashtags (none)",
        None,
        _array({"type": "object"}),
    ),
    Operation(
        "GET",
        "/api/v1/accounts/{id}/lists",
        "Lists holding the account (none)",
        "read:lists",
        _array({"type": "object"}),
    ),
    Operation(
        "POST",
        "/api/v1/statuses/{id}/pin",
        "Feature one's own public or unlisted post on the profile (at most 5)",
        "write:accounts",
        _ref("Status"),
    ),
    Operation(
        "POST",
        "/api/v1/statuses/{id}/unpin",
        "Stop featuring a post",
        "write:accounts",
        _ref("Status"),
    ),
    Operation(
        "GET",
        "/api/v1/accounts/{id}/statuses",
        "An account's statuses the caller may see",
        None,
        _list("Status"),
        (*_PAGE, "exclude_replies", "exclude_reblogs", "only_media", "pinned", "tagged"),
        True,
    ),
    Operation(
        "GET",
        "/api/v1/accounts/{id}/followers",
        "Followers",
        None,
        _list("Account"),
        _PAGE,
        True,
    ),
    Operation(
        "GET",
        "/api/v1/accounts/{id}/following",
        "Followed accounts",
        None,
        _list("Account"),
        _PAGE,
        True,
    ),
    *(
        Operation(
            "POST",
            f"/api/v1/accounts/{{id}}/{action}",
            summary,
            scope,
            _ref("Relationship"),
            params,
        )
        for action, summary, scope, params in (
            ("follow", "Follow (or change reblogs/notify)", "write:follows", ("reblogs", "notify")),
            ("unfollow", "Unfollow or withdraw a request", "write:follows", ()),
            ("remove_from_followers", "Remove a follower", "write:follows", ()),
            ("block", "Block", "write:blocks", ()),
            ("unblock", "Unblock", "write:blocks", ()),
            ("mute", "Mute", "write:mutes", ("notifications", "duration")),
            ("unmute", "Unmute", "write:mutes", ()),
        )
    ),
    # the user's own lists
    Operation(
        "GET",
        "/api/v1/follow_requests",
        "Pending follow requests",
        "read:follows",
        _list("Account"),
        _PAGE,
        True,
    ),
    Operation(
        "POST",
        "/api/v1/follow_requests/{id}/authorize",
        "Accept a follow request",
        "write:follows",
        _ref("Relationship"),
    ),
    Operation(
        "POST",
        "/api/v1/follow_requests/{id}/reject",
        "Reject a follow request",
        "write:follows",
        _ref("Relationship"),
    ),
    Operation(
        "GET", "/api/v1/blocks", "Blocked accounts", "read:blocks", _list("Account"), _PAGE, True
    ),
    Operation(
        "GET", "/api/v1/mutes", "Muted accounts", "read:mutes", _list("Account"), _PAGE, True
    ),
    Operation(
        "GET",
        "/api/v1/favourites",
        "Favourited statuses",
        "read:favourites",
        _list("Status"),
        _PAGE,
        True,
    ),
    Operation(
        "GET",
        "/api/v1/bookmarks",
        "Bookmarked statuses",
        "read:bookmarks",
        _list("Status"),
        _PAGE,
        True,
    ),
    Operation(
        "GET",
        "/api/v1/domain_blocks",
        "Per-user domain blocks (none)",
        "read:blocks",
        _array(_string()),
    ),
    Operation(
        "GET", "/api/v1/endorsements", "Endorsed accounts (none)", "read:accounts", _list("Account")
    ),
    Operation(
        "GET",
        "/api/v1/featured_tags",
        "Featured tags (none)",
        "read:accounts",
        _array({"type": "object"}),
    ),
    Operation(
        "GET",
        "/api/v1/followed_tags",
        "Followed tags (none)",
        "read:follows",
        _array({"type": "object"}),
    ),
    Operation(
        "GET", "/api/v1/filters", "Filters v1 (none)", "read:filters", _array({"type": "object"})
    ),
    Operation(
        "GET", "/api/v2/filters", "Filters (none)", "read:filters", _array({"type": "object"})
    ),
    Operation("GET", "/api/v1/lists", "Lists (none)", "read:lists", _array({"type": "object"})),
    Operation(
        "GET",
        "/api/v2/suggestions",
        "Follow suggestions (none)",
        "read",
        _array({"type": "object"}),
    ),
    Operation("GET", "/api/v1/preferences", "Posting and reading defaults", "read:accounts"),
    Operation(
        "GET",
        "/api/v2/search",
        "Accounts, statuses (by URL, or by text among one's own) and hashtags; resolve "
        "reaches other servers",
        None,
        _ref("SearchResults"),
        ("q", "type", "resolve", "following", "account_id", "limit", "offset"),
    ),
    # notifications, conversations, markers
    Operation(
        "GET",
        "/api/v1/notifications",
        "Notifications (types[], exclude_types[], account_id)",
        "read:notifications",
        _list("Notification"),
        (*_PAGE, "types", "exclude_types", "account_id"),
        True,
    ),
    Operation(
        "GET",
        "/api/v1/notifications/unread_count",
        "Notifications after the read marker",
        "read:notifications",
        _object({"count": _INT}),
    ),
    Operation(
        "GET",
        "/api/v1/notifications/{id}",
        "One notification",
        "read:notifications",
        _ref("Notification"),
    ),
    Operation(
        "POST",
        "/api/v1/notifications/{id}/dismiss",
        "Dismiss one notification",
        "write:notifications",
    ),
    Operation("POST", "/api/v1/notifications/clear", "Dismiss all", "write:notifications"),
    Operation(
        "GET",
        "/api/v1/conversations",
        "Direct-message threads",
        "read:statuses",
        _list("Conversation"),
        _PAGE,
        True,
    ),
    Operation(
        "POST",
        "/api/v1/conversations/{id}/read",
        "Mark a thread read",
        "write:conversations",
        _ref("Conversation"),
    ),
    Operation("DELETE", "/api/v1/conversations/{id}", "Remove a thread", "write:conversations"),
    # Kith chats
    Operation(
        "GET",
        "/api/kith/v1/preferences",
        "The user's Kith preferences",
        "read:accounts",
        _ref("Preferences"),
    ),
    Operation(
        "PATCH",
        "/api/kith/v1/preferences",
        "Share read receipts in chats (read_receipts: true/false; off by default)",
        "write:accounts",
        _ref("Preferences"),
        ("read_receipts",),
    ),
    Operation(
        "GET",
        "/api/kith/v1/chats",
        "The user's chats, the one with the newest message first",
        "read:statuses",
        _list("Chat"),
        _PAGE,
        True,
    ),
    Operation(
        "POST",
        "/api/kith/v1/chats",
        "Start a chat with people (account_ids[] and/or acct[] handles); one person and no "
        "name gives the existing one-to-one chat with them",
        "write:conversations",
        _ref("Chat"),
        ("account_ids", "acct", "name"),
    ),
    Operation("GET", "/api/kith/v1/chats/{id}", "A chat", "read:statuses", _ref("Chat")),
    Operation(
        "PATCH",
        "/api/kith/v1/chats/{id}",
        "Rename a group (its owner only; an empty name removes it)",
        "write:conversations",
        _ref("Chat"),
        ("name",),
    ),
    Operation(
        "POST",
        "/api/kith/v1/chats/{id}/members",
        "Add people to a group (its owner only)",
        "write:conversations",
        _ref("Chat"),
        ("account_ids", "acct"),
    ),
    Operation(
        "DELETE",
        "/api/kith/v1/chats/{id}/members/{account_id}",
        "Remove someone from a group (its owner only)",
        "write:conversations",
        _ref("Chat"),
    ),
    Operation(
        "POST", "/api/kith/v1/chats/{id}/leave", "Leave a chat", "write:conversations", _ref("Chat")
    ),
    Operation(
        "POST",
        "/api/kith/v1/chats/{id}/read",
        "Mark the chat read up to last_read_id (default: its newest message)",
        "write:conversations",
        _ref("Chat"),
        ("last_read_id",),
    ),
    Operation(
        "GET",
        "/api/kith/v1/chats/{id}/messages",
        "The chat's messages, newest first",
        "read:statuses",
        _list("Status"),
        _PAGE,
        True,
    ),
    Operation(
        "POST",
        "/api/kith/v1/chats/{id}/messages",
        "Send a message to everyone in the chat (a direct status naming each member)",
        "write:statuses",
        _ref("Status"),
        ("status", "media_ids", "in_reply_to_id"),
    ),
    Operation(
        "GET",
        "/api/v1/markers",
        "Read positions (timeline[] = home, notifications)",
        "read:statuses",
        {"type": "object", "additionalProperties": _ref("Marker")},
        ("timeline",),
    ),
    Operation(
        "POST",
        "/api/v1/markers",
        "Save read positions",
        "write:statuses",
        {"type": "object", "additionalProperties": _ref("Marker")},
        ("home", "notifications"),
    ),
    # the admin API (accounts granted the admin role)
    Operation(
        "GET",
        "/api/v1/admin/accounts",
        "Accounts (remote, suspended, silenced, pending filters)",
        "admin:read:accounts",
        _list("AdminAccount"),
        (*_PAGE, "remote", "suspended", "silenced", "pending"),
        True,
    ),
    Operation(
        "GET",
        "/api/v2/admin/accounts",
        "Accounts by origin (local, remote) and status (active, pending, disabled, silenced, "
        "suspended)",
        "admin:read:accounts",
        _list("AdminAccount"),
        (*_PAGE, "origin", "status"),
        True,
    ),
    Operation(
        "POST",
        "/api/v1/admin/accounts/{id}/approve",
        "Approve a pending sign-up",
        "admin:write:accounts",
        _ref("AdminAccount"),
    ),
    Operation(
        "POST",
        "/api/v1/admin/accounts/{id}/reject",
        "Reject a pending sign-up (the account is deleted)",
        "admin:write:accounts",
        _ref("AdminAccount"),
    ),
    Operation(
        "POST",
        "/api/v1/admin/accounts/{id}/action",
        "Suspend or silence an account (type = suspend, silence, none; text; report_id)",
        "admin:write:accounts",
        _object({}),
        ("type", "text", "report_id"),
    ),
    Operation(
        "POST",
        "/api/v1/admin/accounts/{id}/unsuspend",
        "Lift a suspension",
        "admin:write:accounts",
        _ref("AdminAccount"),
    ),
    Operation(
        "POST",
        "/api/v1/admin/accounts/{id}/unsilence",
        "Lift a silence",
        "admin:write:accounts",
        _ref("AdminAccount"),
    ),
    Operation(
        "GET",
        "/api/v1/admin/reports",
        "Open (or resolved) reports",
        "admin:read:reports",
        _list("AdminReport"),
        (*_PAGE, "resolved"),
        True,
    ),
    Operation(
        "POST",
        "/api/v1/admin/reports/{id}/resolve",
        "Resolve a report",
        "admin:write:reports",
        _ref("AdminReport"),
    ),
    Operation(
        "GET",
        "/api/v1/admin/domain_blocks",
        "Domain blocks, newest first",
        "admin:read:domain_blocks",
        _list("AdminDomainBlock"),
        _PAGE,
        True,
    ),
    Operation(
        "POST",
        "/api/v1/admin/domain_blocks",
        "Block a domain (severity = silence, suspend, noop; reject_media; private_comment)",
        "admin:write:domain_blocks",
        _ref("AdminDomainBlock"),
        ("domain", "severity", "reject_media", "private_comment"),
    ),
    Operation(
        "DELETE",
        "/api/v1/admin/domain_blocks/{id}",
        "Lift a domain block",
        "admin:write:domain_blocks",
        _object({}),
    ),
    Operation(
        "POST",
        "/api/v1/reports",
        "Report an account (and statuses) to the operators; forward: tell its server",
        "write:reports",
        _ref("Report"),
        ("account_id", "status_ids", "comment", "category", "forward"),
    ),
    # statuses
    Operation(
        "POST",
        "/api/v1/statuses",
        "Post a status (Idempotency-Key honoured)",
        "write:statuses",
        _ref("Status"),
        _STATUS_FIELDS,
    ),
    Operation(
        "GET", "/api/v1/statuses", "Several statuses by id[]", None, _list("Status"), ("id",)
    ),
    Operation("GET", "/api/v1/statuses/{id}", "One status", None, _ref("Status")),
    Operation(
        "DELETE",
        "/api/v1/statuses/{id}",
        "Delete one's status (answers it with its text)",
        "write:statuses",
        _ref("Status"),
    ),
    Operation(
        "PUT",
        "/api/v1/statuses/{id}",
        "Edit one's status",
        "write:statuses",
        _ref("Status"),
        ("status", "spoiler_text", "sensitive"),
    ),
    Operation(
        "GET",
        "/api/v1/statuses/{id}/source",
        "What the author typed",
        "read:statuses",
        _ref("StatusSource"),
    ),
    Operation(
        "GET",
        "/api/v1/statuses/{id}/history",
        "Every version, oldest first",
        None,
        _list("StatusEdit"),
    ),
    Operation("GET", "/api/v1/statuses/{id}/context", "The thread around", None, _ref("Context")),
    Operation(
        "POST",
        "/api/v1/statuses/{id}/favourite",
        "Favourite",
        "write:favourites",
        _ref("Status"),
    ),
    Operation(
        "POST",
        "/api/v1/statuses/{id}/unfavourite",
        "Undo a favourite",
        "write:favourites",
        _ref("Status"),
    ),
    Operation(
        "POST",
        "/api/v1/statuses/{id}/reblog",
        "Boost (answers the boost)",
        "write:statuses",
        _ref("Status"),
    ),
    Operation(
        "POST",
        "/api/v1/statuses/{id}/unreblog",
        "Undo a boost",
        "write:statuses",
        _ref("Status"),
    ),
    Operation(
        "POST", "/api/v1/statuses/{id}/bookmark", "Bookmark", "write:bookmarks", _ref("Status")
    ),
    Operation(
        "POST",
        "/api/v1/statuses/{id}/unbookmark",
        "Remove a bookmark",
        "write:bookmarks",
        _ref("Status"),
    ),
    Operation(
        "GET",
        "/api/v1/statuses/{id}/favourited_by",
        "Who favourited",
        None,
        _list("Account"),
        _PAGE,
        True,
    ),
    Operation(
        "GET",
        "/api/v1/statuses/{id}/reblogged_by",
        "Who boosted",
        None,
        _list("Account"),
        _PAGE,
        True,
    ),
    # timelines
    Operation(
        "GET",
        "/api/v1/timelines/home",
        "Home timeline (materialised)",
        "read:statuses",
        _list("Status"),
        _PAGE,
        True,
    ),
    Operation(
        "GET",
        "/api/v1/timelines/public",
        "Public timeline",
        None,
        _list("Status"),
        (*_PAGE, "local", "remote"),
        True,
    ),
    Operation(
        "GET",
        "/api/v1/timelines/tag/{hashtag}",
        "Hashtag timeline",
        None,
        _list("Status"),
        (*_PAGE, "local", "remote"),
        True,
    ),
    # streaming
    Operation(
        "GET",
        "/api/v1/streaming",
        "WebSocket: send {type: subscribe|unsubscribe, stream, tag}; receive {stream, event, "
        "payload}. Token by header, access_token or Sec-WebSocket-Protocol. The user stream "
        "also carries kith:payment_request and kith:transfer events (payload: the "
        "PaymentRequest or Transfer entity) whenever one changes",
        "read:statuses",
        {},
        ("stream", "tag", "access_token"),
        status=101,
    ),
    *(
        Operation(
            "GET",
            f"/api/v1/streaming/{path}",
            f"Server-sent events of the {path} stream",
            "read:notifications" if path == "user/notification" else "read:statuses",
            {},
            ("tag",) if path.startswith("hashtag") else (),
        )
        for path in (
            "user",
            "user/notification",
            "public",
            "public/local",
            "public/remote",
            "hashtag",
            "hashtag/local",
            "direct",
        )
    ),
    Operation("GET", "/api/v1/streaming/health", "Streaming is up (text OK)", None, {}),
    # media: pictures (JPEG, PNG, WebP, GIF), processed at once (200, never 202)
    *(
        Operation(
            "POST",
            path,
            "Upload a picture (multipart: file, description, focus); 413/422 with the reason",
            "write:media",
            {"type": "object"},
            ("file", "description", "focus"),
        )
        for path in ("/api/v1/media", "/api/v2/media")
    ),
    Operation(
        "GET",
        "/api/v1/media/{id}",
        "One's own unattached upload",
        "write:media",
        {"type": "object"},
    ),
    Operation(
        "PUT",
        "/api/v1/media/{id}",
        "Describe one's own unattached upload",
        "write:media",
        {"type": "object"},
        ("description", "focus"),
    ),
    # ActivityPub C2S helpers (the outbox and inbox themselves are ActivityPub, not REST)
    Operation(
        "POST",
        "/api/kith/v1/proxy",
        "endpoints.proxyUrl: fetch a remote ActivityPub object (form field id)",
        "read",
        _ref("Object"),
        ("id",),
    ),
    # payments
    Operation(
        "GET", "/api/kith/v1/wallet", "Balances per currency", "read:payments", _ref("Wallet")
    ),
    Operation(
        "GET",
        "/api/kith/v1/wallet/transactions",
        "The user's transfers, newest first; direction (incoming, outgoing), state (pending, "
        "completed, rejected, awaiting_acceptance) and currency filter them (format=csv: a CSV "
        "download)",
        "read:payments",
        _list("Transfer"),
        (*_PAGE, "direction", "state", "currency", "format"),
        True,
    ),
    Operation(
        "POST",
        "/api/kith/v1/payment_requests",
        "Request money from payer (@user@host or actor URL); amount is a decimal string; "
        "expires_in in seconds (default from config). The request's uri is its shareable "
        "link; a payer whose server does not take Kith payments gets a direct message with it. "
        "With chat_id it is made in that chat (payer defaults to the other person of a "
        "one-to-one chat) and the chat's message carries the link",
        "write:payments",
        _ref("PaymentRequest"),
        ("payer", "amount", "currency", "note", "expires_in", "chat_id"),
        status=201,
    ),
    Operation(
        "GET",
        "/api/kith/v1/payment_requests",
        "Requests to (incoming) or from (outgoing) the user",
        "read:payments",
        _list("PaymentRequest"),
        (*_PAGE, "direction", "state"),
        True,
    ),
    Operation(
        "GET",
        "/api/kith/v1/payment_requests/{id}",
        "One payment request",
        "read:payments",
        _ref("PaymentRequest"),
    ),
    Operation(
        "POST",
        "/api/kith/v1/payment_requests/{id}/pay",
        "Pay a request (header Idempotency-Key: the same key is the same payment); 202 while "
        "the payee's server decides",
        "write:payments",
        _ref("Transfer"),
    ),
    Operation(
        "POST",
        "/api/kith/v1/payment_requests/{id}/decline",
        "Decline a request made to you",
        "write:payments",
        _ref("PaymentRequest"),
    ),
    Operation(
        "POST",
        "/api/kith/v1/payment_requests/{id}/cancel",
        "Cancel your own open request",
        "write:payments",
        _ref("PaymentRequest"),
    ),
    Operation(
        "POST",
        "/api/kith/v1/transfers",
        "Send money without a request (header Idempotency-Key); 202 while the payee's server "
        "decides. With chat_id it is sent in that chat (to defaults to the other person of a "
        "one-to-one chat; note is shown there)",
        "write:payments",
        _ref("Transfer"),
        ("to", "amount", "currency", "chat_id", "note"),
    ),
    Operation(
        "GET",
        "/api/kith/v1/transfers/{id}",
        "A transfer, with its receipt once decided (signatures checked)",
        "read:payments",
        _ref("Transfer"),
    ),
    Operation(
        "POST",
        "/api/kith/v1/transfers/{id}/accept",
        "Take money sent to the user that waits for them (state awaiting_acceptance, until "
        "accept_by; payments.transfer_acceptance_hours)",
        "write:payments",
        _ref("Transfer"),
    ),
    Operation(
        "POST",
        "/api/kith/v1/transfers/{id}/decline",
        "Send money waiting for the user back to its sender",
        "write:payments",
        _ref("Transfer"),
    ),
    # this document
    Operation("GET", "/api/openapi.json", "This OpenAPI document"),
)


def document(base_url: str) -> dict[str, Any]:
    """The OpenAPI document for this node."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kith client API",
            "version": __version__,
            "description": (
                "The Mastodon client API subset Kith serves, and Kith's own extensions. "
                'Errors answer {"error": ...}; lists are paged with a Link header.'
            ),
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "oauth": {
                    "type": "oauth2",
                    "flows": {
                        "authorizationCode": {
                            "authorizationUrl": f"{base_url}/oauth/authorize",
                            "tokenUrl": f"{base_url}/oauth/token",
                            "scopes": {
                                "read": "read",
                                "write": "write",
                                "follow": "follow",
                                "push": "push",
                            },
                        }
                    },
                }
            },
        },
    }


def _operation(operation: Operation) -> dict[str, Any]:
    described: dict[str, Any] = {"summary": operation.summary}
    if operation.scope is not None:
        described["security"] = [{"oauth": [operation.scope]}]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_names(operation.path)
    ]
    location = "query" if operation.method in ("GET", "DELETE") else "body"
    if location == "query":
        parameters += [
            {"name": name, "in": "query", "schema": {"type": "string"}} for name in operation.params
        ]
    elif operation.params:
        described["requestBody"] = {
            "content": {
                media: {
                    "schema": {
                        "type": "object",
                        "properties": {name: {} for name in operation.params},
                    }
                }
                for media in ("application/json", "application/x-www-form-urlencoded")
            }
        }
    if parameters:
        described["parameters"] = parameters
    answer: dict[str, Any] = {"description": "OK"}
    if operation.response:
        answer["content"] = {"application/json": {"schema": operation.response}}
    if operation.paginated:
        answer["headers"] = {"Link": {"schema": {"type": "string"}}}
    error = {"content": {"application/json": {"schema": _ref("Error")}}}
    described["responses"] = {
        str(operation.status): answer,
        "4XX": {"description": "The request was refused; `error` says why", **error},
    }
    return described


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def find_operation(method: str, path: str) -> Operation | None:
    for operation in OPERATIONS:
        if operation.method == method and operation.path == path:
            return operation
    return None


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_body(document(request.app[URLS].base_url))
