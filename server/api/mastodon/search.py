"""`GET /api/v2/search`: accounts, statuses and hashtags; `resolve` reaches other servers.

Statuses are found as Mastodon finds them without a search engine of its own kind: a pasted
URL (resolved, and fetched from its server with `resolve=true`), and text among the statuses
the user has interacted with — written, favourited, bookmarked or been mentioned in — by a
case-insensitive substring match.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from sqlalchemy import case, func, select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from protocol.addressing import PUBLIC_VISIBILITY, UNLISTED
from protocol.as2 import is_http_url
from server.api.errors import ApiError
from server.api.mastodon.accounts import SEARCH_LIMIT_MAX, find_accounts, like_pattern
from server.api.mastodon.entities import Presenter
from server.api.mastodon.statuses import viewer_of
from server.api.params import boolean, integer, request_params, string
from server.api.responses import json_body
from server.appkeys import DATABASE, FEDERATION, URLS
from server.identity.accounts import Account
from server.social.statuses import Status, status_from_row
from server.social.visibility import can_see
from server.storage.tables import bookmarks, favourites, mentions, status_tags, statuses

log = logging.getLogger("kith.api")
routes = web.RouteTableDef()

_QUERY_LENGTH_MAX = 2048
_TYPES = ("accounts", "statuses", "hashtags")
_OFFSET_MAX = 10_000
_LISTED = (PUBLIC_VISIBILITY, UNLISTED)


@routes.get("/api/v2/search")
async def search(request: web.Request) -> web.Response:
    """Handles and URLs are resolved (with `resolve=true` and a signed-in user); otherwise
    accounts by name, hashtags by prefix and the user's own statuses by text."""
    viewer = await viewer_of(request, "read:search")
    params = await request_params(request)
    query = (string(params, "q", max_length=_QUERY_LENGTH_MAX) or "").strip()
    if not query:
        raise ApiError(422, "q is required")
    kind = string(params, "type", max_length=16)
    if kind is not None and kind not in _TYPES:
        raise ApiError(422, f"type must be one of {', '.join(_TYPES)}")
    limit = min(integer(params, "limit", 20) or 20, SEARCH_LIMIT_MAX)
    offset = integer(params, "offset", 0, high=_OFFSET_MAX) or 0
    resolve = boolean(params, "resolve")
    following = boolean(params, "following")
    account_id = integer(params, "account_id")
    if viewer is None and resolve:
        raise ApiError(401, "Search queries that resolve remote resources need a signed-in user")
    if viewer is None and offset:
        raise ApiError(401, "Search queries pagination is not supported without a signed-in user")
    found_accounts: list[Account] = []
    found_statuses: list[Status] = []
    if is_http_url(query) or query.startswith("acct:"):
        resolved = await _resolve(request, query, resolve) if offset == 0 else None
        if isinstance(resolved, Account):
            found_accounts = [resolved]
        elif isinstance(resolved, Status):
            found_statuses = [resolved]
    else:
        if kind in (None, "accounts"):
            found_accounts = await find_accounts(
                request, viewer, query, limit, resolve, following, offset
            )
        if kind in (None, "statuses") and viewer is not None:
            async with request.app[DATABASE].read() as conn:
                found_statuses = await _statuses_matching(
                    conn, viewer, query, limit, offset, account_id
                )
    tags = await _hashtags(request, query, limit, offset) if kind in (None, "hashtags") else []
    async with request.app[DATABASE].read() as conn:
        found_statuses = [s for s in found_statuses if await can_see(conn, viewer, s)]
        presenter = Presenter(conn, request.app[URLS], viewer)
        body = {
            "accounts": await presenter.accounts(found_accounts) if kind != "statuses" else [],
            "statuses": await presenter.statuses(found_statuses) if kind != "accounts" else [],
            "hashtags": tags,
        }
    return json_body(body)


async def _resolve(request: web.Request, query: str, resolve: bool) -> Account | Status | None:
    """What a URL or `acct:` URI names: known things always, others fetched with `resolve`."""
    federation = request.app[FEDERATION]
    try:
        if query.startswith("acct:"):
            handle = query[5:].lstrip("@")
            if not resolve and "@" in handle:
                return None
            return await federation.resolve_account(handle)
        if not resolve and not query.startswith(request.app[URLS].base_url + "/"):
            return None
        return await federation.resolve_url(query)
    except (LookupError, ActorUnavailable, FetchError) as exc:
        log.info("search could not resolve %s: %s", query, exc)
        return None


async def _statuses_matching(
    conn: AsyncConnection,
    viewer: Account,
    query: str,
    limit: int,
    offset: int,
    account_id: int | None,
) -> list[Status]:
    """The viewer's statuses and those they favourited, bookmarked or were mentioned in,
    whose text holds the query (ignoring case), newest first."""
    touched = union(
        select(statuses.c.id).where(statuses.c.account_id == viewer.id),
        select(favourites.c.status_id).where(favourites.c.account_id == viewer.id),
        select(bookmarks.c.status_id).where(bookmarks.c.account_id == viewer.id),
        select(mentions.c.status_id).where(mentions.c.account_id == viewer.id),
    )
    # Local statuses keep what was typed; remote ones only their HTML.
    searched = case((statuses.c.text != "", statuses.c.text), else_=statuses.c.content)
    pattern = f"%{like_pattern(query)}%"
    statement = select(statuses).where(
        statuses.c.id.in_(touched),
        statuses.c.reblog_of_id.is_(None),
        searched.ilike(pattern, escape="\\") | statuses.c.spoiler_text.ilike(pattern, escape="\\"),
    )
    if account_id is not None:
        statement = statement.where(statuses.c.account_id == account_id % 2**63)
    rows = await conn.execute(statement.order_by(statuses.c.id.desc()).offset(offset).limit(limit))
    return [status_from_row(row) for row in rows]


async def _hashtags(request: web.Request, query: str, limit: int, offset: int) -> list[dict]:
    """Hashtags in use that start with the query (without its `#`), the most used first;
    only public and unlisted posts count (a tag in a private post is that post's content)."""
    name = query.lstrip("#").lower()
    if not name or not name.replace("_", "").isalnum():
        return []
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        rows = await conn.execute(
            select(status_tags.c.name, func.count())
            .join(statuses, statuses.c.id == status_tags.c.status_id)
            .where(
                status_tags.c.name.like(like_pattern(name) + "%", escape="\\"),
                statuses.c.visibility.in_(_LISTED),
            )
            .group_by(status_tags.c.name)
            .order_by(func.count().desc(), status_tags.c.name)
            .offset(offset)
            .limit(limit)
        )
        return [_tag(urls.tag(row[0]), row[0]) for row in rows]


def _tag(url: str, name: str) -> dict[str, Any]:
    return {"name": name, "url": url, "history": [], "following": False}
