"""Direct-message conversations: list, mark read, remove (Mastodon's `conversations`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter
from server.api.pagination import page_request, paginated
from server.api.params import path_id, request_params
from server.api.responses import json_body
from server.appkeys import DATABASE, URLS
from server.identity.accounts import Account
from server.social.statuses import status_from_row
from server.social.timelines import newest_first, paged
from server.storage.engine import Database
from server.storage.tables import conversations, mentions, statuses

routes = web.RouteTableDef()


async def render_conversations(presenter: Presenter, rows: list[Any]) -> list[dict[str, Any]]:
    """Conversation entities: the other participants and the last message."""
    conn, viewer = presenter.conn, presenter.viewer
    assert viewer is not None
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
    people: dict[int, list[int]] = {s.id: [s.account_id] for s in found}
    if found:
        mentioned = await conn.execute(
            select(mentions.c.status_id, mentions.c.account_id)
            .where(mentions.c.status_id.in_(list(people)))
            .order_by(mentions.c.account_id)
        )
        for row in mentioned:
            people[row.status_id].append(row.account_id)
    everyone = {i for ids in people.values() for i in ids} - {viewer.id}
    accounts = await presenter.accounts_by_id(everyone)
    rendered_accounts = dict(
        zip(accounts, await presenter.accounts(accounts.values()), strict=True)
    )
    return [
        {
            "id": str(row.id),
            "unread": row.unread,
            "accounts": [
                rendered_accounts[i]
                for i in dict.fromkeys(people.get(row.last_status_id, []))
                if i in rendered_accounts
            ],
            "last_status": rendered.get(row.last_status_id),
        }
        for row in rows
    ]


async def _repair_orphans(db: Database, me: Account) -> None:
    """Threads whose last message was deleted move back to the newest one left (or go, when
    none is left), as Mastodon's do; the deletion itself only cleared `last_status_id`."""
    async with db.read() as conn:
        orphans = (
            await conn.execute(
                select(conversations.c.id, conversations.c.context_uri).where(
                    conversations.c.account_id == me.id, conversations.c.last_status_id.is_(None)
                )
            )
        ).all()
    if not orphans:
        return
    async with db.transaction() as conn:
        for orphan in orphans:
            newest = await conn.scalar(
                select(func.max(statuses.c.id)).where(
                    or_(
                        statuses.c.context_uri == orphan.context_uri,
                        statuses.c.uri == orphan.context_uri,
                    ),
                    statuses.c.visibility == "direct",
                    or_(
                        statuses.c.account_id == me.id,
                        statuses.c.id.in_(
                            select(mentions.c.status_id).where(mentions.c.account_id == me.id)
                        ),
                    ),
                )
            )
            mine = conversations.c.id == orphan.id
            if newest is None:
                await conn.execute(delete(conversations).where(mine))
            else:
                await conn.execute(update(conversations).where(mine).values(last_status_id=newest))


@routes.get("/api/v1/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    me = await require_account(request, "read:statuses")
    page = page_request(await request_params(request))
    await _repair_orphans(request.app[DATABASE], me)
    query = select(conversations).where(
        conversations.c.account_id == me.id, conversations.c.last_status_id.is_not(None)
    )
    async with request.app[DATABASE].read() as conn:
        rows = newest_first(
            (await conn.execute(paged(query, conversations.c.last_status_id, page))).all(), page
        )
        body = await render_conversations(Presenter(conn, request.app[URLS], me), rows)
    # As Mastodon: threads are paged by their last message's id.
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
    return json_body(body[0])


@routes.delete("/api/v1/conversations/{id}")
async def remove_conversation(request: web.Request) -> web.Response:
    me = await require_account(request, "write:conversations")
    conversation_id = path_id(request)
    async with request.app[DATABASE].transaction() as conn:
        await _own_conversation(conn, me, conversation_id)
        await conn.execute(delete(conversations).where(conversations.c.id == conversation_id))
    return json_body({})
