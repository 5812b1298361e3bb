"""The signed-in user's own lists: follow requests, blocks, mutes, favourites, bookmarks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import Table, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter, mastodon_time
from server.api.pagination import page_request, paginated
from server.api.params import path_id, request_params
from server.api.responses import json_body
from server.appkeys import CLOCK, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, account_from_row, get_account, select_accounts
from server.social import graph
from server.social.graph import InvalidAction
from server.social.statuses import status_from_row
from server.social.timelines import newest_first, paged
from server.storage.tables import accounts, blocks, bookmarks, favourites, follows, mutes, statuses

routes = web.RouteTableDef()


async def _accounts_page(
    request: web.Request,
    scope: str,
    table: Table,
    *where: Any,
    extra: tuple[str, Any] | None = None,
) -> Any:
    """Accounts related to the user through `table`, newest relation first; `extra` (a name
    and a column of `table`) adds that column's value to each Account."""
    me = await require_account(request, scope)
    page = page_request(await request_params(request), default=40, most=80)
    other = table.c.target_account_id if table is not follows else table.c.account_id
    own = table.c.account_id if table is not follows else table.c.target_account_id
    query = (
        select_accounts()
        .add_columns(table.c.id.label("cursor"))
        .join(table, other == accounts.c.id)
        .where(own == me.id, *where)
    )
    if extra is not None:
        query = query.add_columns(extra[1].label("extra"))
    async with request.app[DATABASE].read() as conn:
        rows = newest_first((await conn.execute(paged(query, table.c.id, page))).all(), page)
        body = await Presenter(conn, request.app[URLS], me).accounts(
            [account_from_row(row) for row in rows]
        )
    if extra is not None:
        for entity, row in zip(body, rows, strict=True):
            entity[extra[0]] = _extra_value(row.extra)
    return paginated(request, body, [row.cursor for row in rows])


def _extra_value(value: Any) -> Any:
    return mastodon_time(value) if isinstance(value, datetime) else value


@routes.get("/api/v1/follow_requests")
async def follow_requests(request: web.Request) -> web.Response:
    return await _accounts_page(request, "read:follows", follows, follows.c.state == "requested")


@routes.get("/api/v1/blocks")
async def blocked(request: web.Request) -> web.Response:
    return await _accounts_page(request, "read:blocks", blocks)


@routes.get("/api/v1/mutes")
async def muted(request: web.Request) -> web.Response:
    """Muted accounts, each with `mute_expires_at` (null: until unmuted), as Mastodon."""
    now = request.app[CLOCK]()
    running = or_(mutes.c.expires_at.is_(None), mutes.c.expires_at > now)
    extra = ("mute_expires_at", mutes.c.expires_at)
    return await _accounts_page(request, "read:mutes", mutes, running, extra=extra)


async def _answer(request: web.Request, accept: bool) -> web.Response:
    """Accept or reject a pending follow request; answers the Relationship."""
    me = await require_account(request, "write:follows")
    follower_id = path_id(request)
    urls = request.app[URLS]

    async def action(conn: AsyncConnection, now: datetime) -> Any:
        follower = await get_account(conn, follower_id)
        if follower is None:
            raise ApiError(404, "Record not found")
        return await graph.answer_follow_request(conn, urls, me, follower, accept, now)

    try:
        await request.app[FEDERATION].perform(action)
    except InvalidAction as exc:
        raise ApiError(404, "Record not found", str(exc)) from None
    async with request.app[DATABASE].read() as conn:
        follower = await get_account(conn, follower_id)
        assert follower is not None
        body = (await Presenter(conn, urls, me).relationships([follower]))[0]
    return json_body(body)


@routes.post("/api/v1/follow_requests/{id}/authorize")
async def authorize(request: web.Request) -> web.Response:
    return await _answer(request, True)


@routes.post("/api/v1/follow_requests/{id}/reject")
async def reject(request: web.Request) -> web.Response:
    return await _answer(request, False)


async def _statuses_page(request: web.Request, scope: str, table: Table) -> web.Response:
    """Statuses the user marked (favourites, bookmarks), paged by when they marked them."""
    me: Account = await require_account(request, scope)
    page = page_request(await request_params(request))
    query = (
        select(statuses, table.c.id.label("cursor"))
        .join(table, table.c.status_id == statuses.c.id)
        .where(table.c.account_id == me.id)
    )
    async with request.app[DATABASE].read() as conn:
        rows = newest_first((await conn.execute(paged(query, table.c.id, page))).all(), page)
        found = [status_from_row(row) for row in rows]
        body = await Presenter(conn, request.app[URLS], me).statuses(found)
    return paginated(request, body, [row.cursor for row in rows])


@routes.get("/api/v1/favourites")
async def favourited(request: web.Request) -> web.Response:
    return await _statuses_page(request, "read:favourites", favourites)


@routes.get("/api/v1/bookmarks")
async def bookmarked(request: web.Request) -> web.Response:
    return await _statuses_page(request, "read:bookmarks", bookmarks)


def _nothing(scope: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A list Kith keeps nothing in yet, answered in its shape (an empty list)."""

    async def handler(request: web.Request) -> web.Response:
        await require_account(request, scope)
        return json_body([])

    return handler


# Per-user domain blocks are not offered (operators block domains for the whole node);
# endorsements, featured and followed tags, filters, lists and suggestions are not built yet.
for _path, _scope in (
    ("/api/v1/domain_blocks", "read:blocks"),
    ("/api/v1/endorsements", "read:accounts"),
    ("/api/v1/featured_tags", "read:accounts"),
    ("/api/v1/followed_tags", "read:follows"),
    ("/api/v1/filters", "read:filters"),
    ("/api/v2/filters", "read:filters"),
    ("/api/v1/lists", "read:lists"),
    ("/api/v2/suggestions", "read"),
):
    routes.get(_path)(_nothing(_scope))


@routes.get("/api/v1/preferences")
async def preferences(request: web.Request) -> web.Response:
    """Posting and reading defaults (Kith has no per-user settings for these yet)."""
    await require_account(request, "read:accounts")
    return json_body(
        {
            "posting:default:visibility": "public",
            "posting:default:sensitive": False,
            "posting:default:language": None,
            "reading:expand:media": "default",
            "reading:expand:spoilers": False,
        }
    )
