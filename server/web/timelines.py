"""Timelines: home (the start page when signed in), local, federated; and notifications."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from server.api.mastodon.entities import Presenter
from server.api.mastodon.notifications import render_notifications
from server.appkeys import CLOCK, DATABASE, URLS
from server.identity.accounts import Account, account_from_row, select_accounts
from server.social.notifications import seen_by
from server.social.timelines import PageRequest, home_timeline, public_timeline
from server.storage.tables import accounts, follows, markers, notifications
from server.web.pages import page, render, require_viewer, viewer

routes = web.RouteTableDef()
PAGE_SIZE = 20


def page_of(request: web.Request) -> PageRequest:
    """The page asked for: `max_id` (older than) is the only cursor the pages use."""
    raw = request.query.get("max_id", "")
    max_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else None
    return PageRequest(limit=PAGE_SIZE, max_id=max_id)


def older(request: web.Request, ids: list[int], size: int = PAGE_SIZE) -> str | None:
    """The link to the next (older) page, when this one was full."""
    if len(ids) < size:
        return None
    kept = [(k, v) for k, v in request.query.items() if k != "max_id"]
    return f"{request.path}?{urlencode([*kept, ('max_id', str(ids[-1]))])}"


@routes.get("/")
@page
async def start(request: web.Request) -> web.Response:
    """The home timeline when signed in; what this node is, otherwise."""
    me = await viewer(request)
    if me is None:
        return await render(request, "index.html")
    async with request.app[DATABASE].read() as conn:
        found = await home_timeline(conn, me, page_of(request))
        shown = await Presenter(conn, request.app[URLS], me).statuses(found)
    return await render(
        request,
        "web/timeline.html",
        viewer=me,
        heading="Home",
        intro="",
        stream="user",
        compose=True,
        statuses=shown,
        more=older(request, [s.id for s in found]),
    )


async def _public(request: web.Request, local: bool) -> web.Response:
    me = await require_viewer(request)
    async with request.app[DATABASE].read() as conn:
        found = await public_timeline(conn, me, page_of(request), local=local)
        shown = await Presenter(conn, request.app[URLS], me).statuses(found)
    return await render(
        request,
        "web/timeline.html",
        viewer=me,
        heading="Local" if local else "Federated",
        intro="Public posts by people on this server."
        if local
        else "Public posts from every server this one knows.",
        stream="public:local" if local else "public",
        compose=False,
        statuses=shown,
        more=older(request, [s.id for s in found]),
    )


@routes.get("/local")
@page
async def local_timeline(request: web.Request) -> web.Response:
    return await _public(request, local=True)


@routes.get("/federated")
@page
async def federated_timeline(request: web.Request) -> web.Response:
    return await _public(request, local=False)


@routes.get("/notifications")
@page
async def notifications_page(request: web.Request) -> web.Response:
    """Notifications, newest first; seeing them moves the read marker (the nav's count)."""
    me = await require_viewer(request)
    page_request = page_of(request)
    query = select(notifications).where(seen_by(me))
    if page_request.max_id is not None:
        query = query.where(notifications.c.id < page_request.max_id)
    async with request.app[DATABASE].read() as conn:
        rows = (await conn.execute(query.order_by(notifications.c.id.desc()).limit(40))).all()
        presenter = Presenter(conn, request.app[URLS], me)
        items = await render_notifications(presenter, rows)
        requests = await presenter.accounts(await follow_requests(conn, me))
    if rows and page_request.max_id is None:
        await _mark_read(request, me, rows[0].id)
    return await render(
        request,
        "web/notifications.html",
        viewer=me,
        items=items,
        requests=requests,
        more=older(request, [row.id for row in rows], 40),
    )


async def follow_requests(conn: AsyncConnection, me: Account) -> list[Account]:
    """Accounts waiting for the user to accept or reject their follow request."""
    rows = await conn.execute(
        select_accounts()
        .join(follows, follows.c.account_id == accounts.c.id)
        .where(follows.c.target_account_id == me.id, follows.c.state == "requested")
        .order_by(follows.c.id.desc())
        .limit(80)
    )
    return [account_from_row(row) for row in rows]


async def _mark_read(request: web.Request, me: Account, newest: int) -> None:
    now = request.app[CLOCK]()
    values: dict[str, Any] = {
        "account_id": me.id,
        "timeline": "notifications",
        "last_read_id": newest,
        "version": 1,
        "updated_at": now,
    }
    async with request.app[DATABASE].transaction() as conn:
        if not await insert_ignoring_duplicates(conn, markers, values, ["account_id", "timeline"]):
            await conn.execute(
                update(markers)
                .where(
                    markers.c.account_id == me.id,
                    markers.c.timeline == "notifications",
                    markers.c.last_read_id < newest,
                )
                .values(last_read_id=newest, version=markers.c.version + 1, updated_at=now)
            )
