"""Read markers: where the user stopped reading `home` and `notifications`, across devices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import mastodon_time
from server.api.params import integer, request_params, string_list
from server.api.responses import json_body
from server.appkeys import CLOCK, DATABASE
from server.identity.accounts import Account
from server.storage.tables import markers

routes = web.RouteTableDef()

MARKER_TIMELINES = ("home", "notifications")


async def _marker(conn: AsyncConnection, me: Account, timeline: str) -> Any:
    return (
        await conn.execute(
            select(markers).where(markers.c.account_id == me.id, markers.c.timeline == timeline)
        )
    ).first()


def _render_marker(row: Any) -> dict[str, Any]:
    return {
        "last_read_id": str(row.last_read_id),
        "version": row.version,
        "updated_at": mastodon_time(row.updated_at),
    }


@routes.get("/api/v1/markers")
async def get_markers(request: web.Request) -> web.Response:
    """The markers of the timelines asked for (`timeline[]`); unknown names are ignored."""
    me = await require_account(request, "read:statuses")
    params = await request_params(request)
    wanted = [t for t in string_list(params, "timeline", 10) if t in MARKER_TIMELINES]
    async with request.app[DATABASE].read() as conn:
        body = {}
        for timeline in dict.fromkeys(wanted):
            row = await _marker(conn, me, timeline)
            if row is not None:
                body[timeline] = _render_marker(row)
    return json_body(body)


def _positions(params: dict[str, Any]) -> dict[str, int]:
    """`home[last_read_id]` (form) or `{"home": {"last_read_id": …}}` (JSON), per timeline."""
    given = {}
    for timeline in MARKER_TIMELINES:
        value = params.get(timeline)
        nested = value.get("last_read_id") if isinstance(value, dict) else None
        flat = params.get(f"{timeline}[last_read_id]")
        raw = nested if nested is not None else flat
        if raw is not None:
            position = integer({f"{timeline}[last_read_id]": raw}, f"{timeline}[last_read_id]")
            if position is not None:
                given[timeline] = position
    if not given:
        raise ApiError(422, "give home[last_read_id] or notifications[last_read_id]")
    return given


@routes.post("/api/v1/markers")
async def save_markers(request: web.Request) -> web.Response:
    """Save read positions; each save bumps the marker's version (for other devices)."""
    me = await require_account(request, "write:statuses")
    given = _positions(await request_params(request))
    now: datetime = request.app[CLOCK]()
    async with request.app[DATABASE].transaction() as conn:
        for timeline, last_read_id in given.items():
            values = {
                "account_id": me.id,
                "timeline": timeline,
                "last_read_id": last_read_id,
                "version": 1,
                "updated_at": now,
            }
            if not await insert_ignoring_duplicates(
                conn, markers, values, ["account_id", "timeline"]
            ):
                await conn.execute(
                    update(markers)
                    .where(markers.c.account_id == me.id, markers.c.timeline == timeline)
                    .values(
                        last_read_id=last_read_id, version=markers.c.version + 1, updated_at=now
                    )
                )
        body = {t: _render_marker(await _marker(conn, me, t)) for t in given}
    return json_body(body)
