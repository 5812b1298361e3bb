"""Mastodon timelines: home (materialised per user), public and hashtag."""

from __future__ import annotations

from aiohttp import web

from server.api.auth import reading_as
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter
from server.api.mastodon.statuses import viewer_of
from server.api.pagination import page_request, paginated
from server.api.params import boolean, request_params
from server.appkeys import DATABASE, URLS
from server.social.timelines import home_timeline, public_timeline, tag_timeline

routes = web.RouteTableDef()
_TAG_LENGTH_MAX = 100


@routes.get("/api/v1/timelines/home")
async def home(request: web.Request) -> web.Response:
    async with reading_as(request, "read:statuses") as (account, conn):
        page = page_request(await request_params(request))
        found = await home_timeline(conn, account, page)
        body = await Presenter(conn, request.app[URLS], account).statuses(found)
    return paginated(request, body, [s.id for s in found])


@routes.get("/api/v1/timelines/public")
async def public(request: web.Request) -> web.Response:
    """Public posts known here; `local=true` for this node's, `remote=true` for others'."""
    viewer = await viewer_of(request, "read:statuses")
    params = await request_params(request)
    page = page_request(params)
    local, remote = boolean(params, "local"), boolean(params, "remote")
    async with request.app[DATABASE].read() as conn:
        found = await public_timeline(conn, viewer, page, local=local, remote=remote)
        body = await Presenter(conn, request.app[URLS], viewer).statuses(found)
    return paginated(request, body, [s.id for s in found])


@routes.get("/api/v1/timelines/tag/{hashtag}")
async def tag(request: web.Request) -> web.Response:
    viewer = await viewer_of(request, "read:statuses")
    name = request.match_info["hashtag"].lstrip("#")
    if not name or len(name) > _TAG_LENGTH_MAX:
        raise ApiError(404, "Record not found")
    params = await request_params(request)
    page = page_request(params)
    local, remote = boolean(params, "local"), boolean(params, "remote")
    async with request.app[DATABASE].read() as conn:
        found = await tag_timeline(conn, viewer, name, page, local=local, remote=remote)
        body = await Presenter(conn, request.app[URLS], viewer).statuses(found)
    return paginated(request, body, [s.id for s in found])
