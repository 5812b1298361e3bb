"""`POST /api/v1/statuses/:id/pin` and `/unpin`: feature one's own posts on the profile."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter
from server.api.mastodon.statuses import visible_status
from server.api.params import path_id
from server.api.responses import json_body
from server.appkeys import DATABASE, FEDERATION, URLS
from server.social import pins
from server.social.graph import InvalidAction

routes = web.RouteTableDef()


async def _change(request: web.Request, pinning: bool) -> web.Response:
    """Pin or unpin the status in the path; answers the Status with its new `pinned`."""
    me = await require_account(request, "write:accounts")
    status_id = path_id(request)
    urls = request.app[URLS]
    act = pins.pin if pinning else pins.unpin

    async def action(conn: AsyncConnection, now: datetime) -> Any:
        status = await visible_status(conn, me, status_id)
        return await act(conn, urls, me, status, now)

    try:
        await request.app[FEDERATION].perform(action)
    except InvalidAction as exc:
        raise ApiError(422, str(exc)) from None
    async with request.app[DATABASE].read() as conn:
        status = await visible_status(conn, me, status_id)
        entity = await Presenter(conn, urls, me).status(status)
        entity["pinned"] = await pins.is_pinned(conn, me.id, status.id)
    return json_body(entity)


@routes.post("/api/v1/statuses/{id}/pin")
async def pin(request: web.Request) -> web.Response:
    return await _change(request, True)


@routes.post("/api/v1/statuses/{id}/unpin")
async def unpin(request: web.Request) -> web.Response:
    return await _change(request, False)
