"""Reports (`POST /api/v1/reports`) as Mastodon takes them: account_id, status_ids, comment,
forward, category. A forwarded report about a remote account goes to its server as a Flag."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter, mastodon_time
from server.api.params import boolean, request_params, required, string, string_list
from server.api.responses import json_body
from server.appkeys import DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, get_account
from server.moderation import ModerationError
from server.social.reports import COMMENT_MAX, Report, create_report
from server.social.statuses import status_by_id, status_by_uri
from server.social.visibility import can_see

routes = web.RouteTableDef()


@routes.post("/api/v1/reports")
async def file_report(request: web.Request) -> web.Response:
    """Report an account (and some of its statuses) to this node's operators."""
    me = await require_account(request, "write:reports")
    params = await request_params(request)
    target_id = _id(required(params, "account_id", 20))
    status_ids = [_id(s) for s in string_list(params, "status_ids", 100)]
    comment = string(params, "comment", "", max_length=COMMENT_MAX) or ""
    category = string(params, "category", "other") or "other"
    forward = boolean(params, "forward")
    async with request.app[DATABASE].read() as conn:
        target = await get_account(conn, target_id)
        if target is None or target.is_deleted:
            raise ApiError(404, "Record not found")
        uris = [await _status_uri(conn, me, target, status_id) for status_id in status_ids]
    urls = request.app[URLS]

    async def act(conn: AsyncConnection, now: Any) -> Any:
        return await create_report(conn, urls, me, target, uris, comment, category, forward, now)

    try:
        report = await request.app[FEDERATION].perform(act)
    except ModerationError as exc:
        raise ApiError(422, str(exc)) from None
    async with request.app[DATABASE].read() as conn:
        return json_body(await report_entity(conn, request, report, me))


async def _status_uri(conn: AsyncConnection, me: Account, target: Account, status_id: int) -> str:
    """A reported status: the target's, and one the reporter may see (a post they cannot
    see is answered as one that does not exist, so a report tells them nothing)."""
    status = await status_by_id(conn, status_id)
    if status is None or status.account_id != target.id or not await can_see(conn, me, status):
        raise ApiError(422, f"status {status_id} is not one of the reported account's")
    return status.uri


def _id(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise ApiError(422, f"{text!r} is not an id")
    return int(text)


async def report_entity(
    conn: AsyncConnection, request: web.Request, report: Report, viewer: Account
) -> dict[str, Any]:
    """Mastodon's Report entity."""
    target = await get_account(conn, report.target_account_id)
    assert target is not None
    statuses = [await status_by_uri(conn, uri) for uri in report.status_uris]
    return {
        "id": str(report.id),
        "action_taken": report.resolved_at is not None,
        "action_taken_at": mastodon_time(report.resolved_at) if report.resolved_at else None,
        "category": report.category,
        "comment": report.comment,
        "forwarded": report.forwarded_at is not None,
        "created_at": mastodon_time(report.created_at),
        "status_ids": [str(s.id) for s in statuses if s is not None],
        "rule_ids": [],
        "target_account": await Presenter(conn, request.app[URLS], viewer).account(target),
    }
