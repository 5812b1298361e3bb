"""`GET /api/v2/search`: accounts, statuses and hashtags; `resolve` reaches other servers."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import func, select

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from protocol.as2 import is_http_url
from server.api.errors import ApiError
from server.api.mastodon.accounts import SEARCH_LIMIT_MAX, find_accounts
from server.api.mastodon.entities import Presenter
from server.api.mastodon.statuses import viewer_of
from server.api.params import boolean, integer, request_params, string
from server.appkeys import DATABASE, FEDERATION, URLS
from server.identity.accounts import Account
from server.social.statuses import Status
from server.social.visibility import can_see
from server.storage.tables import status_tags

log = logging.getLogger("kith.api")
routes = web.RouteTableDef()

_QUERY_LENGTH_MAX = 2048
_TYPES = ("accounts", "statuses", "hashtags")


@routes.get("/api/v2/search")
async def search(request: web.Request) -> web.Response:
    """Handles and URLs are resolved (with `resolve=true` and a signed-in user); otherwise
    accounts by name and hashtags by prefix. Full-text search of posts is not offered:
    statuses are found by URL only."""
    viewer = await viewer_of(request, "read:search")
    params = await request_params(request)
    query = (string(params, "q", max_length=_QUERY_LENGTH_MAX) or "").strip()
    kind = string(params, "type", max_length=16)
    if kind is not None and kind not in _TYPES:
        raise ApiError(422, f"type must be one of {', '.join(_TYPES)}")
    limit = min(integer(params, "limit", 20) or 20, SEARCH_LIMIT_MAX)
    offset = integer(params, "offset", 0, high=10_000) or 0
    resolve = boolean(params, "resolve")
    if resolve and viewer is None:
        raise ApiError(401, "Search queries that resolve remote resources need a signed-in user")
    found_accounts: list[Account] = []
    found_statuses: list[Status] = []
    if is_http_url(query) or query.startswith("acct:"):
        resolved = await _resolve(request, query, resolve)
        if isinstance(resolved, Account):
            found_accounts = [resolved]
        elif isinstance(resolved, Status):
            found_statuses = [resolved]
    elif kind in (None, "accounts"):
        found_accounts = await find_accounts(request, viewer, query, limit, resolve, offset=offset)
    tags = await _hashtags(request, query, limit, offset) if kind in (None, "hashtags") else []
    async with request.app[DATABASE].read() as conn:
        found_statuses = [s for s in found_statuses if await can_see(conn, viewer, s)]
        presenter = Presenter(conn, request.app[URLS], viewer)
        body = {
            "accounts": await presenter.accounts(found_accounts) if kind != "statuses" else [],
            "statuses": await presenter.statuses(found_statuses) if kind != "accounts" else [],
            "hashtags": tags,
        }
    return web.json_response(body)


async def _resolve(request: web.Request, query: str, resolve: bool) -> Account | Status | None:
    federation = request.app[FEDERATION]
    try:
        if query.startswith("acct:"):
            if not resolve and "@" in query[5:]:
                return None
            return await federation.resolve_account(query[5:])
        if not resolve and not query.startswith(request.app[URLS].base_url + "/"):
            return None
        return await federation.resolve_url(query)
    except (LookupError, ActorUnavailable, FetchError) as exc:
        log.info("search could not resolve %s: %s", query, exc)
        return None


async def _hashtags(request: web.Request, query: str, limit: int, offset: int) -> list[dict]:
    name = query.lstrip("#").lower()
    if not name or not name.replace("_", "").isalnum():
        return []
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        rows = await conn.execute(
            select(status_tags.c.name, func.count())
            .where(status_tags.c.name.like(name.replace("_", "\\_") + "%", escape="\\"))
            .group_by(status_tags.c.name)
            .order_by(func.count().desc(), status_tags.c.name)
            .offset(offset)
            .limit(limit)
        )
        return [
            {"name": row[0], "url": urls.tag(row[0]), "history": [], "following": False}
            for row in rows
        ]
