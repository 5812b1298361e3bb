"""Mastodon account endpoints."""

from __future__ import annotations

from aiohttp import web

from server.api.auth import require_account
from server.api.mastodon.entities import Presenter
from server.appkeys import DATABASE, URLS

routes = web.RouteTableDef()


@routes.get("/api/v1/accounts/verify_credentials")
async def verify_credentials(request: web.Request) -> web.Response:
    """Who the token belongs to."""
    account = await require_account(request, "read:accounts", "profile")
    async with request.app[DATABASE].read() as conn:
        entity = await Presenter(conn, request.app[URLS], account).credential_account(account)
    return web.json_response(entity)
