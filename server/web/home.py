"""The start page: the home timeline when signed in, what this node is otherwise."""

from __future__ import annotations

from aiohttp import web

from server.web.pages import page, render, viewer

routes = web.RouteTableDef()


@routes.get("/")
@page
async def start(request: web.Request) -> web.Response:
    account = await viewer(request)
    if account is None:
        return await render(request, "index.html")
    return await render(request, "web/home.html", viewer=account)
