"""Mastodon `Account` entities and the account endpoints built so far."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.auth import require_account
from server.appkeys import DATABASE, URLS
from server.identity.accounts import Account
from server.social.collections import count_followers, count_following, count_statuses
from server.social.text import plain_text_to_html
from server.urls import Urls

routes = web.RouteTableDef()


@dataclass(frozen=True)
class AccountCounts:
    statuses: int = 0
    followers: int = 0
    following: int = 0


async def account_counts(conn: AsyncConnection, account: Account) -> AccountCounts:
    """The numbers an Account entity shows."""
    return AccountCounts(
        statuses=await count_statuses(conn, account),
        followers=await count_followers(conn, account),
        following=await count_following(conn, account),
    )


def render_account(account: Account, urls: Urls, counts: AccountCounts = AccountCounts()) -> dict:
    """An Account entity as Mastodon documents it (ids as strings, dates as ISO 8601)."""
    avatar = urls.static("avatar-missing.png")
    header = urls.static("header-missing.png")
    return {
        "id": str(account.id),
        "username": account.username,
        "acct": account.username,
        "display_name": account.display_name,
        "locked": account.is_locked,
        "bot": account.is_bot,
        "discoverable": account.is_discoverable,
        "indexable": account.is_indexable,
        "group": False,
        "created_at": account.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        .isoformat()
        .replace("+00:00", ".000Z"),
        "note": plain_text_to_html(account.note),
        "url": urls.profile(account),
        "uri": urls.actor(account),
        "avatar": avatar,
        "avatar_static": avatar,
        "header": header,
        "header_static": header,
        "followers_count": counts.followers,
        "following_count": counts.following,
        "statuses_count": counts.statuses,
        "last_status_at": None,
        "hide_collections": False,
        "noindex": not account.is_indexable,
        "emojis": [],
        "roles": [],
        "fields": [],
    }


def render_credential_account(account: Account, urls: Urls, counts: AccountCounts) -> dict:
    """The signed-in user's own Account, with its `source` (what they typed)."""
    entity = render_account(account, urls, counts)
    entity["source"] = {
        "privacy": "public",
        "sensitive": False,
        "language": None,
        "note": account.note,
        "fields": [],
        "follow_requests_count": 0,
        "hide_collections": False,
        "discoverable": account.is_discoverable,
        "indexable": account.is_indexable,
    }
    return entity


@routes.get("/api/v1/accounts/verify_credentials")
async def verify_credentials(request: web.Request) -> web.Response:
    """Who the token belongs to."""
    account = await require_account(request, "read:accounts", "profile")
    async with request.app[DATABASE].read() as conn:
        counts = await account_counts(conn, account)
    return web.json_response(render_credential_account(account, request.app[URLS], counts))
