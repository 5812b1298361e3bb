"""Media uploads arrive with the messaging issue; until then the endpoints say so clearly."""

from __future__ import annotations

from aiohttp import web

from server.api.auth import require_account
from server.api.errors import ApiError

routes = web.RouteTableDef()
_NOT_YET = "Media uploads are not supported by this server yet"


@routes.post("/api/v1/media")
@routes.post("/api/v2/media")
async def upload(request: web.Request) -> web.Response:
    await require_account(request, "write:media")
    raise ApiError(422, _NOT_YET)


@routes.get("/api/v1/media/{id}")
@routes.put("/api/v1/media/{id}")
async def attachment(request: web.Request) -> web.Response:
    await require_account(request, "write:media")
    raise ApiError(404, "Record not found", _NOT_YET)
