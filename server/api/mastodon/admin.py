"""The Mastodon admin API subset: accounts (list, act, approve or reject sign-ups), reports
(list, resolve), domain blocks.

Only accounts granted the admin role (`kith admin grant USER`) may call it, with a token
holding `admin:read`/`admin:write` (or their per-entity scopes). Every action is recorded in
the audit log as "admin:<username>".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import moderation
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter, mastodon_time
from server.api.pagination import page_request, paginated
from server.api.params import boolean, path_id, request_params, required, string
from server.api.responses import json_body
from server.appkeys import DATABASE, FEDERATION, URLS
from server.identity import registration
from server.identity.accounts import Account, account_from_row, get_account, select_accounts
from server.identity.registration import RegistrationError, SignUpRecord, sign_up_records
from server.moderation import ModerationError
from server.social import reports
from server.social.timelines import PageRequest, newest_first, paged
from server.storage.tables import accounts, domain_blocks

routes = web.RouteTableDef()
_ACCOUNT_ACTIONS = {"suspend": "suspend", "silence": "silence", "none": None, "disable": "suspend"}


async def _admin(request: web.Request, scope: str) -> Account:
    """The signed-in admin; 403 for anyone else (Mastodon answers the same)."""
    me = await require_account(request, scope)
    if not me.is_admin:
        raise ApiError(403, "This action is not allowed")
    return me


def _who(me: Account) -> str:
    return f"admin:{me.username}"


async def _moderate(request: web.Request, action: Any) -> Any:
    try:
        return await request.app[FEDERATION].moderate(action)
    except ModerationError as exc:
        raise ApiError(422, str(exc)) from None


async def admin_account(
    conn: AsyncConnection,
    request: web.Request,
    account: Account,
    sign_ups: dict[int, SignUpRecord] | None = None,
) -> dict:
    """Mastodon's Admin::Account entity (`sign_ups`: the records of a page, read at once)."""
    if sign_ups is None:
        sign_ups = await sign_up_records(conn, [account.id])
    record = sign_ups.get(account.id)
    ip = record.ip if record else None
    return {
        "id": str(account.id),
        "username": account.username,
        "domain": account.domain or None,
        "created_at": mastodon_time(account.created_at),
        "email": account.email or "",
        "ip": ip,
        "ips": [{"ip": ip, "used_at": mastodon_time(record.created_at)}] if record and ip else [],
        "locale": (record.locale if record else None) or "",
        "invite_request": record.reason if record else None,
        "role": {
            "id": "3" if account.is_admin else "-99",
            "name": "Admin" if account.is_admin else "",
        },
        "confirmed": True,
        "approved": account.approved,
        "disabled": account.is_suspended and account.is_local,
        "silenced": account.silenced_at is not None,
        "suspended": account.is_suspended,
        "created_by_application_id": _id_or_none(record.application_id if record else None),
        "invited_by_account_id": _id_or_none(record.invited_by_id if record else None),
        "account": await Presenter(conn, request.app[URLS], None).account(account),
    }


def _id_or_none(value: int | None) -> str | None:
    return str(value) if value is not None else None


# Mastodon's admin lists: 100 a page unless asked, at most 200, newest first, Link headers.
_ADMIN_PAGE, _ADMIN_PAGE_MAX = 100, 200


def _admin_page(params: dict[str, Any]) -> PageRequest:
    return page_request(params, _ADMIN_PAGE, _ADMIN_PAGE_MAX)


async def _admin_accounts(request: web.Request, query: Any, params: dict[str, Any]) -> web.Response:
    page = _admin_page(params)
    async with request.app[DATABASE].read() as conn:
        rows = (await conn.execute(paged(query, accounts.c.id, page))).all()
        found = [account_from_row(r) for r in newest_first(rows, page)]
        records = await sign_up_records(conn, [a.id for a in found])
        body = [await admin_account(conn, request, a, records) for a in found]
    return paginated(request, body)


def _local_accounts(remote: bool) -> Any:
    query = select_accounts().where(accounts.c.is_instance_actor.is_(False))
    return query.where(accounts.c.domain != "" if remote else accounts.c.domain == "")


@routes.get("/api/v1/admin/accounts")
async def list_admin_accounts(request: web.Request) -> web.Response:
    """Accounts, local or remote (`remote=true`), optionally only suspended, silenced or
    waiting for approval (`pending=true`)."""
    await _admin(request, "admin:read:accounts")
    params = await request_params(request)
    query = _local_accounts(boolean(params, "remote"))
    for name in ("suspended", "silenced", "pending"):
        if boolean(params, name):
            query = query.where(_STATUS[name])
    return await _admin_accounts(request, query, params)


# Mastodon's account states (v2 `status`, v1's boolean filters).
_STATUS = {
    "active": accounts.c.suspended_at.is_(None) & accounts.c.approved.is_(True),
    "pending": accounts.c.approved.is_(False),
    "disabled": accounts.c.suspended_at.is_not(None) & (accounts.c.domain == ""),
    "silenced": accounts.c.silenced_at.is_not(None),
    "suspended": accounts.c.suspended_at.is_not(None),
}


@routes.get("/api/v2/admin/accounts")
async def list_admin_accounts_v2(request: web.Request) -> web.Response:
    """Accounts by `origin` (local, remote) and `status` (active, pending, disabled,
    silenced, suspended), as Mastodon's v2 filters them."""
    await _admin(request, "admin:read:accounts")
    params = await request_params(request)
    origin = string(params, "origin", "local", 20) or "local"
    status = string(params, "status", "", 20) or ""
    if origin not in ("local", "remote"):
        raise ApiError(422, "origin is local or remote")
    if status and status not in _STATUS:
        raise ApiError(422, f"status is one of {', '.join(_STATUS)}")
    query = _local_accounts(origin == "remote")
    if status:
        query = query.where(_STATUS[status])
    return await _admin_accounts(request, query, params)


async def _decide(request: web.Request, approve: bool) -> web.Response:
    me = await _admin(request, "admin:write:accounts")
    target = await _account(request)
    if not target.is_pending:
        raise ApiError(403, "This action is not allowed", "the account is not waiting for approval")
    decide = registration.approve if approve else registration.reject

    async def act(conn: AsyncConnection, now: datetime) -> list:
        try:
            await decide(conn, target, _who(me), now)
        except RegistrationError as exc:  # decided by someone else in between
            raise ModerationError(str(exc)) from None
        return []

    async with request.app[DATABASE].read() as conn:
        before = await admin_account(conn, request, target)  # a rejected one is gone after
    await _moderate(request, act)
    if not approve:
        return json_body(before)
    async with request.app[DATABASE].read() as conn:
        return json_body(await admin_account(conn, request, await _reloaded(conn, target)))


@routes.post("/api/v1/admin/accounts/{id}/approve")
async def approve_account(request: web.Request) -> web.Response:
    """Let a pending sign-up in (audited)."""
    return await _decide(request, approve=True)


@routes.post("/api/v1/admin/accounts/{id}/reject")
async def reject_account(request: web.Request) -> web.Response:
    """Turn a pending sign-up away: the account is deleted (audited)."""
    return await _decide(request, approve=False)


@routes.post("/api/v1/admin/accounts/{id}/action")
async def act_on_account(request: web.Request) -> web.Response:
    """type = suspend, silence or none (with `text`, the reason); `report_id` is resolved."""
    me = await _admin(request, "admin:write:accounts")
    params = await request_params(request)
    kind = required(params, "type", 20)
    if kind not in _ACCOUNT_ACTIONS:
        raise ApiError(422, f"type is one of {', '.join(_ACCOUNT_ACTIONS)}")
    reason = string(params, "text", max_length=5000) or None
    report_id = string(params, "report_id", max_length=20)
    target = await _account(request)

    urls = request.app[URLS]

    async def act(conn: AsyncConnection, now: datetime) -> list:
        action, outbound = _ACCOUNT_ACTIONS[kind], []
        if action == "suspend":
            outbound = await moderation.suspend_account(conn, target, _who(me), now, reason, urls)
        elif action == "silence":
            await moderation.silence_account(conn, target, _who(me), now, reason)
        if report_id and report_id.isdigit():
            report = await reports.report_by_id(conn, int(report_id))
            if report is not None and report.resolved_at is None:
                await reports.resolve_report(conn, report, _who(me), now, reason)
        return outbound

    await _moderate(request, act)
    return json_body({})


@routes.post("/api/v1/admin/accounts/{id}/unsuspend")
async def unsuspend(request: web.Request) -> web.Response:
    me = await _admin(request, "admin:write:accounts")
    target = await _account(request)
    await _moderate(
        request,
        lambda conn, now: moderation.unsuspend_account(
            conn, target, _who(me), now, urls=request.app[URLS]
        ),
    )
    async with request.app[DATABASE].read() as conn:
        return json_body(await admin_account(conn, request, await _reloaded(conn, target)))


@routes.post("/api/v1/admin/accounts/{id}/unsilence")
async def unsilence(request: web.Request) -> web.Response:
    me = await _admin(request, "admin:write:accounts")
    target = await _account(request)
    await _moderate(
        request,
        lambda conn, now: moderation.silence_account(conn, target, _who(me), now, silenced=False),
    )
    async with request.app[DATABASE].read() as conn:
        return json_body(await admin_account(conn, request, await _reloaded(conn, target)))


async def _account(request: web.Request) -> Account:
    async with request.app[DATABASE].read() as conn:
        found = await get_account(conn, path_id(request))
    if found is None or found.is_instance_actor:
        raise ApiError(404, "Record not found")
    return found


async def _reloaded(conn: AsyncConnection, account: Account) -> Account:
    found = await get_account(conn, account.id)
    assert found is not None
    return found


async def admin_report(conn: AsyncConnection, request: web.Request, report: Any) -> dict:
    """Mastodon's Admin::Report entity (statuses by their URIs' ids here)."""
    reporter = await get_account(conn, report.account_id)
    target = await get_account(conn, report.target_account_id)
    assert reporter is not None
    assert target is not None
    return {
        "id": str(report.id),
        "action_taken": report.resolved_at is not None,
        "action_taken_at": mastodon_time(report.resolved_at) if report.resolved_at else None,
        "category": report.category,
        "comment": report.comment,
        "forwarded": report.forwarded_at is not None,
        "created_at": mastodon_time(report.created_at),
        "updated_at": mastodon_time(report.resolved_at or report.created_at),
        "account": await admin_account(conn, request, reporter),
        "target_account": await admin_account(conn, request, target),
        "assigned_account": None,
        "action_taken_by_account": None,
        "statuses": [],
        "status_uris": report.status_uris,
        "rules": [],
    }


@routes.get("/api/v1/admin/reports")
async def list_admin_reports(request: web.Request) -> web.Response:
    """Open reports (`resolved=true`: the resolved ones)."""
    await _admin(request, "admin:read:reports")
    params = await request_params(request)
    page = _admin_page(params)
    async with request.app[DATABASE].read() as conn:
        found = await reports.list_reports(conn, boolean(params, "resolved"), page)
        body = [await admin_report(conn, request, r) for r in found]
    return paginated(request, body)


@routes.post("/api/v1/admin/reports/{id}/resolve")
async def resolve(request: web.Request) -> web.Response:
    me = await _admin(request, "admin:write:reports")
    async with request.app[DATABASE].read() as conn:
        report = await reports.report_by_id(conn, path_id(request))
    if report is None:
        raise ApiError(404, "Record not found")
    await _moderate(request, lambda conn, now: reports.resolve_report(conn, report, _who(me), now))
    async with request.app[DATABASE].read() as conn:
        done = await reports.report_by_id(conn, report.id)
        return json_body(await admin_report(conn, request, done))


def _domain_block(row: Any) -> dict[str, Any]:
    """Mastodon's Admin::DomainBlock entity."""
    return {
        "id": str(row.id),
        "domain": row.domain,
        "created_at": mastodon_time(row.created_at),
        "severity": row.severity,
        "reject_media": row.reject_media,
        "reject_reports": False,
        "private_comment": row.reason,
        "public_comment": None,
        "obfuscate": False,
    }


@routes.get("/api/v1/admin/domain_blocks")
async def list_domain_blocks(request: web.Request) -> web.Response:
    await _admin(request, "admin:read:domain_blocks")
    page = _admin_page(await request_params(request))
    async with request.app[DATABASE].read() as conn:
        rows = (await conn.execute(paged(select(domain_blocks), domain_blocks.c.id, page))).all()
    return paginated(request, [_domain_block(row) for row in newest_first(rows, page)])


@routes.post("/api/v1/admin/domain_blocks")
async def block_domain(request: web.Request) -> web.Response:
    """domain, severity (silence, suspend, noop), reject_media, private_comment."""
    me = await _admin(request, "admin:write:domain_blocks")
    params = await request_params(request)
    domain = required(params, "domain", 255)
    severity = string(params, "severity", "silence") or "silence"
    reject_media = boolean(params, "reject_media")
    reason = string(params, "private_comment", max_length=5000) or None

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        return await moderation.block_domain(
            conn, domain, severity, _who(me), now, reject_media, reason
        )

    block = await _moderate(request, act)
    async with request.app[DATABASE].read() as conn:
        row = (
            await conn.execute(select(domain_blocks).where(domain_blocks.c.domain == block.domain))
        ).one()
    return json_body(_domain_block(row))


@routes.delete("/api/v1/admin/domain_blocks/{id}")
async def unblock_domain(request: web.Request) -> web.Response:
    me = await _admin(request, "admin:write:domain_blocks")
    async with request.app[DATABASE].read() as conn:
        row = (
            await conn.execute(select(domain_blocks).where(domain_blocks.c.id == path_id(request)))
        ).first()
    if row is None:
        raise ApiError(404, "Record not found")
    await _moderate(
        request, lambda conn, now: moderation.unblock_domain(conn, row.domain, _who(me), now)
    )
    return json_body({})
