"""Mastodon status endpoints: post, read, edit, delete, threads and interactions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from protocol.addressing import VISIBILITIES
from server.api.auth import optional_grant, require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter, mastodon_time
from server.api.pagination import page_request, paginated
from server.api.params import boolean, integer, path_id, request_params, string
from server.api.responses import json_body
from server.appkeys import CONFIG, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, account_from_row, select_accounts
from server.media import remove_files
from server.social import interactions, posting
from server.social.graph import InvalidAction
from server.social.media import InvalidMedia, checked_media_ids, file_names_of
from server.social.posting import TEXT_LENGTH_MAX, InvalidPost
from server.social.statuses import Status, status_by_id
from server.social.text import find_mentions
from server.social.timelines import ancestors, descendants, paged
from server.social.visibility import can_see
from server.storage.tables import accounts, favourites, status_edits, statuses

log = logging.getLogger("kith.api")
routes = web.RouteTableDef()

# Handles resolved per post; more are left as plain text (a post is not a mass-mention tool).
MENTIONS_RESOLVED_MAX = 30
_IDEMPOTENCY_KEY_LENGTH_MAX = 255
_LANGUAGE_LENGTH_MAX = 16


async def viewer_of(request: web.Request, scope: str) -> Account | None:
    """The signed-in user when a token is sent (it must allow `scope`), else None."""
    grant = await optional_grant(request)
    if grant is None:
        return None
    return await require_account(request, scope)


async def visible_status(conn: AsyncConnection, viewer: Account | None, status_id: int) -> Status:
    """The status if the viewer may see it; 404 otherwise (existence is not revealed)."""
    status = await status_by_id(conn, status_id)
    if status is None or not await can_see(conn, viewer, status):
        raise ApiError(404, "Record not found")
    return status


async def _entity(request: web.Request, viewer: Account | None, status_id: int) -> dict:
    async with request.app[DATABASE].read() as conn:
        status = await visible_status(conn, viewer, status_id)
        return await Presenter(conn, request.app[URLS], viewer).status(status)


# --- posting ------------------------------------------------------------------------------


@routes.post("/api/v1/statuses")
async def create_status(request: web.Request) -> web.Response:
    """Publish a status; a repeated `Idempotency-Key` returns the first one's status."""
    account = await require_account(request, "write:statuses")
    params = await request_params(request)
    try:
        media_ids = checked_media_ids(params["media_ids"]) if params.get("media_ids") else []
    except InvalidMedia as exc:
        raise ApiError(422, f"Validation failed: {exc}") from None
    if params.get("poll"):
        raise ApiError(422, "Polls are not supported by this server yet")
    if params.get("scheduled_at"):
        raise ApiError(422, "Scheduled statuses are not supported by this server yet")
    text = string(params, "status", "", max_length=TEXT_LENGTH_MAX) or ""
    if not text.strip() and not media_ids:
        raise ApiError(422, "Validation failed: Text can't be blank")
    visibility = string(params, "visibility", "public", max_length=16) or "public"
    if visibility not in VISIBILITIES:
        raise ApiError(422, f"visibility must be one of {', '.join(VISIBILITIES)}")
    spoiler_text = string(params, "spoiler_text", "", max_length=TEXT_LENGTH_MAX) or ""
    sensitive = boolean(params, "sensitive")
    language = string(params, "language", max_length=_LANGUAGE_LENGTH_MAX) or None
    reply_to_id = integer(params, "in_reply_to_id")
    key = request.headers.get("Idempotency-Key", "")[:_IDEMPOTENCY_KEY_LENGTH_MAX] or None
    db, urls = request.app[DATABASE], request.app[URLS]
    if key is not None:
        async with db.read() as conn:
            earlier = await posting.status_for_idempotency_key(conn, account, key)
        if earlier is not None:
            return json_body(await _entity(request, account, earlier))
    mentioned = await resolve_mentions(request, text)

    async def publish(conn: AsyncConnection, now: datetime) -> Any:
        parent = await visible_status(conn, account, reply_to_id) if reply_to_id else None
        status, outbound = await posting.publish_status(
            conn,
            urls,
            account,
            text,
            now,
            visibility,
            mentioned,
            parent,
            spoiler_text,
            sensitive,
            language,
            media_ids,
        )
        if key is not None:
            await posting.remember_idempotency_key(conn, account, key, status, now)
        return status, outbound

    try:
        status = await request.app[FEDERATION].perform(publish)
    except (InvalidPost, InvalidMedia) as exc:
        raise ApiError(422, f"Validation failed: {exc}") from None
    except IntegrityError:
        # The same key raced another request: that one's status is the answer.
        async with db.read() as conn:
            earlier = await posting.status_for_idempotency_key(conn, account, key or "")
        if earlier is None:
            raise
        return json_body(await _entity(request, account, earlier))
    return json_body(await _entity(request, account, status.id))


async def resolve_mentions(request: web.Request, text: str) -> list[Account]:
    """The accounts a post's `@name` and `@name@host` handles name, fetched if remote.

    Handles that name nobody stay plain text, as on Mastodon.
    """
    federation = request.app[FEDERATION]
    handles = find_mentions(text)[:MENTIONS_RESOLVED_MAX]

    async def resolve(name: str, host: str | None) -> Account | None:
        try:
            return await federation.resolve_account(f"{name}@{host}" if host else name)
        except (LookupError, ActorUnavailable, FetchError) as exc:
            log.info("mention @%s%s not resolved: %s", name, f"@{host}" if host else "", exc)
            return None

    found = await asyncio.gather(*(resolve(name, host) for name, host in handles))
    return [account for account in found if account is not None]


@routes.get("/api/v1/statuses/{id}")
async def get_status(request: web.Request) -> web.Response:
    viewer = await viewer_of(request, "read:statuses")
    return json_body(await _entity(request, viewer, path_id(request)))


@routes.get("/api/v1/statuses")
async def get_statuses(request: web.Request) -> web.Response:
    """Several statuses at once (`id[]`); unknown or hidden ones are left out."""
    viewer = await viewer_of(request, "read:statuses")
    params = await request_params(request)
    raw = params.get("id", [])
    ids = raw if isinstance(raw, list) else [raw]
    if len(ids) > 40:
        raise ApiError(422, "at most 40 ids")
    wanted = [int(i) for i in ids if isinstance(i, str) and i.isascii() and i.isdigit()]
    async with request.app[DATABASE].read() as conn:
        shown = []
        for status_id in wanted[:40]:
            status = await status_by_id(conn, status_id % 2**63)
            if status is not None and await can_see(conn, viewer, status):
                shown.append(status)
        return json_body(await Presenter(conn, request.app[URLS], viewer).statuses(shown))


@routes.delete("/api/v1/statuses/{id}")
async def delete_status(request: web.Request) -> web.Response:
    """Delete one's own status; the answer carries its source text for "delete and redraft"."""
    account = await require_account(request, "write:statuses")
    status_id = path_id(request)
    db, urls = request.app[DATABASE], request.app[URLS]
    async with db.read() as conn:
        status = await _own_status(conn, account, status_id)
        entity = await Presenter(conn, urls, account).status(status)
        files = await file_names_of(conn, status.id)
    entity["text"] = status.text
    await request.app[FEDERATION].perform(
        lambda conn, now: posting.delete_status(conn, urls, account, status, now)
    )
    # The rows went with the status; its pictures' URLs must stop working too.
    await asyncio.to_thread(remove_files, request.app[CONFIG].data_dir, *files)
    return json_body(entity)


async def _own_status(conn: AsyncConnection, account: Account, status_id: int) -> Status:
    status = await status_by_id(conn, status_id)
    if status is None or status.reblog_of_id is not None:
        raise ApiError(404, "Record not found")
    if status.account_id != account.id:
        if await can_see(conn, account, status):
            raise ApiError(403, "This action is not allowed")
        raise ApiError(404, "Record not found")
    return status


@routes.put("/api/v1/statuses/{id}")
async def edit_status(request: web.Request) -> web.Response:
    """Edit one's own status; the previous version goes to its history."""
    account = await require_account(request, "write:statuses")
    status_id = path_id(request)
    params = await request_params(request)
    if params.get("poll"):
        raise ApiError(422, "Polls are not supported by this server yet")
    media_ids = _edited_media_ids(params)
    db, urls = request.app[DATABASE], request.app[URLS]
    async with db.read() as conn:
        status = await _own_status(conn, account, status_id)
    text = string(params, "status", status.text, max_length=TEXT_LENGTH_MAX) or ""
    spoiler_text = string(params, "spoiler_text", "", max_length=TEXT_LENGTH_MAX) or ""
    sensitive = boolean(params, "sensitive", status.sensitive if spoiler_text else False)

    async def edit(conn: AsyncConnection, now: datetime) -> list:
        current = await _own_status(conn, account, status_id)
        return await posting.edit_status(
            conn, urls, account, current, text, now, spoiler_text, sensitive, media_ids
        )

    try:
        await request.app[FEDERATION].perform(edit)
    except (InvalidPost, InvalidMedia) as exc:
        raise ApiError(422, f"Validation failed: {exc}") from None
    return json_body(await _entity(request, account, status_id))


def _edited_media_ids(params: dict[str, Any]) -> list[int] | None:
    """An edit's `media_ids`: absent means unchanged (apps resend the current ones)."""
    if "media_ids" not in params:
        return None
    raw = params["media_ids"]
    try:
        return checked_media_ids(raw) if raw not in ("", [], None) else []
    except InvalidMedia as exc:
        raise ApiError(422, f"Validation failed: {exc}") from None


@routes.get("/api/v1/statuses/{id}/source")
async def status_source(request: web.Request) -> web.Response:
    account = await require_account(request, "read:statuses")
    async with request.app[DATABASE].read() as conn:
        status = await _own_status(conn, account, path_id(request))
    return json_body(
        {"id": str(status.id), "text": status.text, "spoiler_text": status.spoiler_text}
    )


@routes.get("/api/v1/statuses/{id}/history")
async def status_history(request: web.Request) -> web.Response:
    """Every version of a status, oldest first; the last is the current one."""
    viewer = await viewer_of(request, "read:statuses")
    async with request.app[DATABASE].read() as conn:
        status = await visible_status(conn, viewer, path_id(request))
        author = await Presenter(conn, request.app[URLS], viewer).accounts_by_id(
            [status.account_id]
        )
        account = (await Presenter(conn, request.app[URLS], viewer).accounts(author.values()))[0]
        rows = await conn.execute(
            select(status_edits)
            .where(status_edits.c.status_id == status.id)
            .order_by(status_edits.c.id)
        )
        versions = [
            _version(row.content, row.spoiler_text, row.sensitive, row.created_at, account)
            for row in rows
        ]
    versions.append(
        _version(
            status.content,
            status.spoiler_text,
            status.sensitive,
            status.edited_at or status.created_at,
            account,
        )
    )
    return json_body(versions)


def _version(
    content: str, spoiler_text: str, sensitive: bool, at: datetime, account: dict
) -> dict[str, Any]:
    return {
        "content": content,
        "spoiler_text": spoiler_text,
        "sensitive": sensitive,
        "created_at": mastodon_time(at),
        "account": account,
        "poll": None,
        "media_attachments": [],
        "emojis": [],
    }


@routes.get("/api/v1/statuses/{id}/context")
async def status_context(request: web.Request) -> web.Response:
    """The thread around a status: what it replies to, and the replies below it."""
    viewer = await viewer_of(request, "read:statuses")
    async with request.app[DATABASE].read() as conn:
        status = await visible_status(conn, viewer, path_id(request))
        above = [s for s in await ancestors(conn, status) if await can_see(conn, viewer, s)]
        below = [s for s in await descendants(conn, status) if await can_see(conn, viewer, s)]
        presenter = Presenter(conn, request.app[URLS], viewer)
        rendered = await presenter.statuses(above + below)
    return json_body({"ancestors": rendered[: len(above)], "descendants": rendered[len(above) :]})


# --- interactions -------------------------------------------------------------------------

Interaction = Callable[[AsyncConnection, Account, Status, datetime], Awaitable[Any]]


async def _interact(request: web.Request, scope: str, act: Interaction) -> web.Response:
    """Run an interaction on a visible status and answer with the status as it now is."""
    account = await require_account(request, scope)
    status_id = path_id(request)

    async def action(conn: AsyncConnection, now: datetime) -> Any:
        status = await visible_status(conn, account, status_id)
        if status.reblog_of_id is not None:  # acting on a boost acts on its original
            status = await visible_status(conn, account, status.reblog_of_id)
        returned = await act(conn, account, status, now)
        return (status.id, returned) if isinstance(returned, list) else (status.id, [])

    try:
        target_id = await request.app[FEDERATION].perform(action)
    except InvalidAction as exc:
        raise ApiError(422, str(exc)) from None
    return json_body(await _entity(request, account, target_id))


def _with_urls(request: web.Request, act: Callable[..., Awaitable[Any]]) -> Interaction:
    urls = request.app[URLS]
    return lambda conn, account, status, now: act(conn, urls, account, status, now)


@routes.post("/api/v1/statuses/{id}/favourite")
async def favourite(request: web.Request) -> web.Response:
    return await _interact(request, "write:favourites", _with_urls(request, interactions.like))


@routes.post("/api/v1/statuses/{id}/unfavourite")
async def unfavourite(request: web.Request) -> web.Response:
    return await _interact(request, "write:favourites", _with_urls(request, interactions.unlike))


@routes.post("/api/v1/statuses/{id}/reblog")
async def reblog(request: web.Request) -> web.Response:
    """Boost; the answer is the boost itself, with the original embedded (as Mastodon)."""
    account = await require_account(request, "write:statuses")
    status_id = path_id(request)
    urls = request.app[URLS]

    async def action(conn: AsyncConnection, now: datetime) -> Any:
        status = await visible_status(conn, account, status_id)
        if status.reblog_of_id is not None:
            status = await visible_status(conn, account, status.reblog_of_id)
        return await interactions.boost(conn, urls, account, status, now)

    try:
        boost = await request.app[FEDERATION].perform(action)
    except InvalidAction as exc:
        raise ApiError(422, str(exc)) from None
    return json_body(await _entity(request, account, boost.id))


@routes.post("/api/v1/statuses/{id}/unreblog")
async def unreblog(request: web.Request) -> web.Response:
    return await _interact(request, "write:statuses", _with_urls(request, interactions.unboost))


@routes.post("/api/v1/statuses/{id}/bookmark")
async def bookmark(request: web.Request) -> web.Response:
    return await _interact(request, "write:bookmarks", interactions.bookmark)


@routes.post("/api/v1/statuses/{id}/unbookmark")
async def unbookmark(request: web.Request) -> web.Response:
    async def act(conn: AsyncConnection, account: Account, status: Status, now: datetime) -> None:
        await interactions.unbookmark(conn, account, status)

    return await _interact(request, "write:bookmarks", act)


@routes.get("/api/v1/statuses/{id}/favourited_by")
async def favourited_by(request: web.Request) -> web.Response:
    """Who liked a status, most recent first, paged by the like's id."""
    return await _accounts_of(request, favourites.c.id, favourites.c.status_id, favourites)


@routes.get("/api/v1/statuses/{id}/reblogged_by")
async def reblogged_by(request: web.Request) -> web.Response:
    return await _accounts_of(request, statuses.c.id, statuses.c.reblog_of_id, statuses)


async def _accounts_of(request: web.Request, cursor: Any, status_column: Any, table: Any) -> Any:
    viewer = await viewer_of(request, "read:accounts")
    page = page_request(await request_params(request), default=40, most=80)
    async with request.app[DATABASE].read() as conn:
        status = await visible_status(conn, viewer, path_id(request))
        query = (
            select_accounts()
            .add_columns(cursor.label("cursor"))
            .join(table, table.c.account_id == accounts.c.id)
            .where(status_column == status.id)
        )
        rows = (await conn.execute(paged(query, cursor, page))).all()
        if page.min_id is not None:
            rows.reverse()
        found = [account_from_row(row) for row in rows]
        body = await Presenter(conn, request.app[URLS], viewer).accounts(found)
    return paginated(request, body, [row.cursor for row in rows])
