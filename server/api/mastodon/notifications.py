"""Notifications: list (by type, by sender), get, dismiss, clear, and the unread count."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.addressing import is_public
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter, mastodon_time
from server.api.pagination import page_request, paginated
from server.api.params import integer, path_id, request_params, string_list
from server.api.responses import json_body
from server.appkeys import DATABASE, URLS
from server.identity.accounts import Account
from server.social.notifications import seen_by
from server.social.statuses import Status, status_from_row
from server.social.timelines import newest_first, paged
from server.storage.tables import blocks, follows, markers, mentions, notifications, statuses

routes = web.RouteTableDef()

# The types Kith creates; clients may name others (Mastodon ignores unknown names too).
NOTIFICATION_TYPES = (
    "mention",
    "status",
    "reblog",
    "follow",
    "follow_request",
    "favourite",
    "update",
    "kith.payment_request",  # someone asks the user for money (Kith payments)
    "kith.payment_received",  # money arrived in the user's wallet
)
UNREAD_COUNT_DEFAULT = 100
UNREAD_COUNT_MAX = 1000


async def visible_pairs(
    conn: AsyncConnection, viewer_ids: Iterable[int], found: Iterable[Status]
) -> set[tuple[int, int]]:
    """The (viewer id, status id) pairs that `can_see` allows, in at most three queries for
    any number of viewers and statuses (a notification page; a streamed post's listeners)."""
    viewers, shown = list(set(viewer_ids)), list(found)
    authors = list({s.account_id for s in shown})
    if not viewers or not shown:
        return set()
    rows = await conn.execute(
        select(blocks.c.account_id, blocks.c.target_account_id).where(
            or_(
                and_(blocks.c.account_id.in_(viewers), blocks.c.target_account_id.in_(authors)),
                and_(blocks.c.account_id.in_(authors), blocks.c.target_account_id.in_(viewers)),
            )
        )
    )
    blocked = {pair for a, b in rows for pair in ((a, b), (b, a))}
    restricted = [s for s in shown if not is_public(s.visibility)]
    mentioned: set[tuple[int, int]] = set()
    following: set[tuple[int, int]] = set()
    if restricted:
        rows = await conn.execute(
            select(mentions.c.account_id, mentions.c.status_id).where(
                mentions.c.status_id.in_([s.id for s in restricted]),
                mentions.c.account_id.in_(viewers),
            )
        )
        mentioned = {(row.account_id, row.status_id) for row in rows}
        private_authors = list({s.account_id for s in restricted if s.visibility == "private"})
        if private_authors:
            rows = await conn.execute(
                select(follows.c.account_id, follows.c.target_account_id).where(
                    follows.c.account_id.in_(viewers),
                    follows.c.target_account_id.in_(private_authors),
                    follows.c.state == "accepted",
                )
            )
            following = {(row.account_id, row.target_account_id) for row in rows}
    return {
        (viewer, status.id)
        for viewer in viewers
        for status in shown
        if viewer == status.account_id
        or (
            (viewer, status.account_id) not in blocked
            and (
                is_public(status.visibility)
                or (viewer, status.id) in mentioned
                or (status.visibility == "private" and (viewer, status.account_id) in following)
            )
        )
    }


async def render_notifications(presenter: Presenter, rows: list[Any]) -> list[dict[str, Any]]:
    """Notification entities; one whose status the recipient may not see is left out."""
    conn, viewer = presenter.conn, presenter.viewer
    assert viewer is not None
    status_ids = list({row.status_id for row in rows if row.status_id})
    found = (
        [
            status_from_row(r)
            for r in await conn.execute(select(statuses).where(statuses.c.id.in_(status_ids)))
        ]
        if status_ids
        else []
    )
    allowed = await visible_pairs(conn, [viewer.id], found)
    visible = [s for s in found if (viewer.id, s.id) in allowed]
    rendered_statuses = dict(
        zip([s.id for s in visible], await presenter.statuses(visible), strict=True)
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


def _shown(query: Select, me: Account, params: dict[str, Any]) -> Select:
    """The user's notifications as a client filters them (`types[]`, `exclude_types[]`,
    `account_id`). As Mastodon, unknown type names are ignored: they match nothing."""
    wanted = string_list(params, "types", 50)
    excluded = string_list(params, "exclude_types", 50)
    query = query.where(seen_by(me))
    if wanted or excluded:
        requested = [
            kind
            for kind in NOTIFICATION_TYPES
            if (not wanted or kind in wanted) and kind not in excluded
        ]
        query = query.where(notifications.c.type.in_(requested))
    sender = integer(params, "account_id")
    if sender is not None:
        query = query.where(notifications.c.from_account_id == sender)
    return query


@routes.get("/api/v1/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    me = await require_account(request, "read:notifications")
    params = await request_params(request)
    page = page_request(params, default=40, most=80)
    query = paged(_shown(select(notifications), me, params), notifications.c.id, page)
    async with request.app[DATABASE].read() as conn:
        rows = newest_first((await conn.execute(query)).all(), page)
        body = await render_notifications(Presenter(conn, request.app[URLS], me), rows)
    return paginated(request, body, [row.id for row in rows])


@routes.get("/api/v1/notifications/unread_count")
async def unread_count(request: web.Request) -> web.Response:
    """Notifications newer than the `notifications` read marker (at most `limit`)."""
    me = await require_account(request, "read:notifications")
    params = await request_params(request)
    limit = integer(params, "limit", UNREAD_COUNT_DEFAULT, low=1) or UNREAD_COUNT_DEFAULT
    async with request.app[DATABASE].read() as conn:
        last_read = await conn.scalar(
            select(markers.c.last_read_id).where(
                markers.c.account_id == me.id, markers.c.timeline == "notifications"
            )
        )
        unread = (
            _shown(select(notifications.c.id), me, params)
            .where(notifications.c.id > (last_read or 0))
            .limit(min(limit, UNREAD_COUNT_MAX))
        )
        count = await conn.scalar(select(func.count()).select_from(unread.subquery()))
    return json_body({"count": int(count or 0)})


@routes.post("/api/v1/notifications/clear")
async def clear(request: web.Request) -> web.Response:
    me = await require_account(request, "write:notifications")
    async with request.app[DATABASE].transaction() as conn:
        await conn.execute(delete(notifications).where(notifications.c.account_id == me.id))
    return json_body({})


@routes.get("/api/v1/notifications/{id}")
async def get_notification(request: web.Request) -> web.Response:
    me = await require_account(request, "read:notifications")
    query = _shown(select(notifications), me, {}).where(notifications.c.id == path_id(request))
    async with request.app[DATABASE].read() as conn:
        row = (await conn.execute(query)).first()
        presenter = Presenter(conn, request.app[URLS], me)
        body = await render_notifications(presenter, [row] if row else [])
    if not body:
        raise ApiError(404, "Record not found")
    return json_body(body[0])


@routes.post("/api/v1/notifications/{id}/dismiss")
async def dismiss(request: web.Request) -> web.Response:
    me = await require_account(request, "write:notifications")
    notification_id = path_id(request)
    async with request.app[DATABASE].transaction() as conn:
        result = await conn.execute(
            delete(notifications).where(
                notifications.c.id == notification_id, notifications.c.account_id == me.id
            )
        )
    if result.rowcount == 0:
        raise ApiError(404, "Record not found")
    return json_body({})
