"""Notifications, direct-message conversations and read markers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import insert_ignoring_duplicates
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter, mastodon_time
from server.api.pagination import page_request, paginated
from server.api.params import integer, path_id, request_params, string_list
from server.appkeys import CLOCK, DATABASE, URLS
from server.identity.accounts import Account
from server.social.statuses import status_from_row
from server.social.timelines import newest_first, paged
from server.social.visibility import can_see
from server.storage.tables import conversations, markers, mentions, notifications, statuses

routes = web.RouteTableDef()

NOTIFICATION_TYPES = (
    "mention",
    "status",
    "reblog",
    "follow",
    "follow_request",
    "favourite",
    "update",
)
MARKER_TIMELINES = ("home", "notifications")


async def render_notifications(presenter: Presenter, rows: list[Any]) -> list[dict[str, Any]]:
    """Notification entities; one whose status the recipient may no longer see is left out."""
    conn, viewer = presenter.conn, presenter.viewer
    status_ids = {row.status_id for row in rows if row.status_id}
    found = (
        await conn.execute(select(statuses).where(statuses.c.id.in_(status_ids)))
        if status_ids
        else []
    )
    visible = {}
    for row in found:
        status = status_from_row(row)
        if await can_see(conn, viewer, status):
            visible[status.id] = status
    rendered_statuses = dict(
        zip(visible, await presenter.statuses(list(visible.values())), strict=True)
    )
    senders = await presenter.accounts_by_id(row.from_account_id for row in rows)
    rendered_senders = dict(zip(senders, await presenter.accounts(senders.values()), strict=True))
    result = []
    for row in rows:
        if row.status_id and row.status_id not in rendered_statuses:
            continue
        if row.from_account_id not in rendered_senders:
            continue
        entity = {
            "id": str(row.id),
            "type": row.type,
            "created_at": mastodon_time(row.created_at),
            "group_key": f"ungrouped-{row.id}",
            "account": rendered_senders[row.from_account_id],
        }
        if row.status_id:
            entity["status"] = rendered_statuses[row.status_id]
        result.append(entity)
    return result


def _types(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    wanted = string_list(params, "types", 20)
    excluded = string_list(params, "exclude_types", 20)
    for name in (*wanted, *excluded):
        if name not in NOTIFICATION_TYPES and name not in ("poll", "admin.sign_up", "admin.report"):
            raise ApiError(422, f"unknown notification type {name!r}")
    return wanted, excluded


@routes.get("/api/v1/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    me = await require_account(request, "read:notifications")
    params = await request_params(request)
    page = page_request(params, default=40, most=80)
    wanted, excluded = _types(params)
    query = select(notifications).where(notifications.c.account_id == me.id)
    if wanted:
        query = query.where(notifications.c.type.in_(wanted))
    if excluded:
        query = query.where(notifications.c.type.not_in(excluded))
    from_id = integer(params, "account_id")
    if from_id is not None:
        query = query.where(notifications.c.from_account_id == from_id)
    async with request.app[DATABASE].read() as conn:
        rows = newest_first(
            (await conn.execute(paged(query, notifications.c.id, page))).all(), page
        )
        body = await render_notifications(Presenter(conn, request.app[URLS], me), rows)
    return paginated(request, body, [row.id for row in rows])


@routes.get("/api/v1/notifications/unread_count")
async def unread_count(request: web.Request) -> web.Response:
    """Notifications newer than the `notifications` read marker."""
    me = await require_account(request, "read:notifications")
    async with request.app[DATABASE].read() as conn:
        marker = await _marker(conn, me, "notifications")
        last_read = marker.last_read_id if marker else 0
        count = await conn.execute(
            select(func.count())
            .select_from(notifications)
            .where(notifications.c.account_id == me.id, notifications.c.id > last_read)
        )
        return web.json_response({"count": min(int(count.scalar_one()), 1000)})


@routes.post("/api/v1/notifications/clear")
async def clear(request: web.Request) -> web.Response:
    me = await require_account(request, "write:notifications")
    async with request.app[DATABASE].transaction() as conn:
        await conn.execute(delete(notifications).where(notifications.c.account_id == me.id))
    return web.json_response({})


@routes.get("/api/v1/notifications/{id}")
async def get_notification(request: web.Request) -> web.Response:
    me = await require_account(request, "read:notifications")
    async with request.app[DATABASE].read() as conn:
        row = (
            await conn.execute(
                select(notifications).where(
                    notifications.c.id == path_id(request), notifications.c.account_id == me.id
                )
            )
        ).first()
        body = await render_notifications(
            Presenter(conn, request.app[URLS], me), [row] if row else []
        )
    if not body:
        raise ApiError(404, "Record not found")
    return web.json_response(body[0])


@routes.post("/api/v1/notifications/{id}/dismiss")
async def dismiss(request: web.Request) -> web.Response:
    me = await require_account(request, "write:notifications")
    async with request.app[DATABASE].transaction() as conn:
        result = await conn.execute(
            delete(notifications).where(
                notifications.c.id == path_id(request), notifications.c.account_id == me.id
            )
        )
    if result.rowcount == 0:
        raise ApiError(404, "Record not found")
    return web.json_response({})


# --- conversations --------------------------------------------------------------------------


async def render_conversations(presenter: Presenter, rows: list[Any]) -> list[dict[str, Any]]:
    """Conversation entities: the other participants and the last message."""
    conn = presenter.conn
    assert presenter.viewer is not None
    last_ids = [row.last_status_id for row in rows if row.last_status_id]
    found = (
        [
            status_from_row(r)
            for r in await conn.execute(select(statuses).where(statuses.c.id.in_(last_ids)))
        ]
        if last_ids
        else []
    )
    rendered = dict(zip([s.id for s in found], await presenter.statuses(found), strict=True))
    people: dict[int, list[int]] = {}
    for status in found:
        mentioned = await conn.execute(
            select(mentions.c.account_id).where(mentions.c.status_id == status.id)
        )
        people[status.id] = [status.account_id, *(row.account_id for row in mentioned)]
    everyone = {i for ids in people.values() for i in ids} - {presenter.viewer.id}
    accounts = await presenter.accounts_by_id(everyone)
    rendered_accounts = dict(
        zip(accounts, await presenter.accounts(accounts.values()), strict=True)
    )
    result = []
    for row in rows:
        others = [
            rendered_accounts[i]
            for i in dict.fromkeys(people.get(row.last_status_id, []))
            if i in rendered_accounts
        ]
        result.append(
            {
                "id": str(row.id),
                "unread": row.unread,
                "accounts": others,
                "last_status": rendered.get(row.last_status_id),
            }
        )
    return result


@routes.get("/api/v1/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    me = await require_account(request, "read:statuses")
    page = page_request(await request_params(request))
    query = select(conversations).where(
        conversations.c.account_id == me.id, conversations.c.last_status_id.is_not(None)
    )
    async with request.app[DATABASE].read() as conn:
        rows = newest_first(
            (await conn.execute(paged(query, conversations.c.last_status_id, page))).all(), page
        )
        body = await render_conversations(Presenter(conn, request.app[URLS], me), rows)
    return paginated(request, body, [row.last_status_id for row in rows])


async def _own_conversation(conn: AsyncConnection, me: Account, conversation_id: int) -> Any:
    row = (
        await conn.execute(
            select(conversations).where(
                conversations.c.id == conversation_id, conversations.c.account_id == me.id
            )
        )
    ).first()
    if row is None:
        raise ApiError(404, "Record not found")
    return row


@routes.post("/api/v1/conversations/{id}/read")
async def read_conversation(request: web.Request) -> web.Response:
    me = await require_account(request, "write:conversations")
    conversation_id = path_id(request)
    async with request.app[DATABASE].transaction() as conn:
        await _own_conversation(conn, me, conversation_id)
        await conn.execute(
            update(conversations).where(conversations.c.id == conversation_id).values(unread=False)
        )
    async with request.app[DATABASE].read() as conn:
        row = await _own_conversation(conn, me, conversation_id)
        body = await render_conversations(Presenter(conn, request.app[URLS], me), [row])
    return web.json_response(body[0])


@routes.delete("/api/v1/conversations/{id}")
async def remove_conversation(request: web.Request) -> web.Response:
    me = await require_account(request, "write:conversations")
    conversation_id = path_id(request)
    async with request.app[DATABASE].transaction() as conn:
        await _own_conversation(conn, me, conversation_id)
        await conn.execute(delete(conversations).where(conversations.c.id == conversation_id))
    return web.json_response({})


# --- markers --------------------------------------------------------------------------------


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
    me = await require_account(request, "read:statuses")
    params = await request_params(request)
    wanted = [t for t in string_list(params, "timeline", 2) if t in MARKER_TIMELINES]
    async with request.app[DATABASE].read() as conn:
        body = {}
        for timeline in wanted:
            row = await _marker(conn, me, timeline)
            if row is not None:
                body[timeline] = _render_marker(row)
    return web.json_response(body)


@routes.post("/api/v1/markers")
async def save_markers(request: web.Request) -> web.Response:
    """Save read positions; each save bumps the marker's version (for other devices)."""
    me = await require_account(request, "write:statuses")
    params = await request_params(request)
    given = {}
    for timeline in MARKER_TIMELINES:
        value = params.get(timeline)
        nested = value.get("last_read_id") if isinstance(value, dict) else None
        flat = params.get(f"{timeline}[last_read_id]")
        raw = nested if nested is not None else flat
        if raw is not None:
            given[timeline] = integer({"last_read_id": raw}, "last_read_id")
    if not given:
        raise ApiError(422, "give home[last_read_id] or notifications[last_read_id]")
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
    async with request.app[DATABASE].read() as conn:
        body = {t: _render_marker(await _marker(conn, me, t)) for t in given}
    return web.json_response(body)
