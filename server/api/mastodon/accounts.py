"""Mastodon account endpoints: profiles, their statuses and relations, follow, block, mute."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter
from server.api.mastodon.statuses import viewer_of
from server.api.pagination import page_request, paginated
from server.api.params import boolean, integer, path_id, request_params, string, string_list
from server.api.responses import json_body
from server.appkeys import CONFIG, DATABASE, FEDERATION, URLS
from server.identity.accounts import (
    Account,
    account_from_row,
    get_account,
    select_accounts,
)
from server.media import AVATAR_BYTES_MAX, MediaRejected, remove_files, store_avatar
from server.social import graph, mutes, pins, profiles
from server.social.graph import InvalidAction
from server.social.remote_accounts import known_account
from server.social.timelines import PageRequest, account_timeline, newest_first, paged
from server.storage.tables import accounts, blocks, follows
from server.urls import Urls

log = logging.getLogger("kith.api")
routes = web.RouteTableDef()

_HANDLE_LENGTH_MAX = 320
SEARCH_LIMIT_MAX = 40  # v2 search
_ACCOUNT_SEARCH_LIMIT_MAX = 80


async def _account(conn: AsyncConnection, account_id: int) -> Account:
    """A known account (not the instance actor) by id; 404 otherwise."""
    account = await get_account(conn, account_id)
    if account is None or account.is_instance_actor or account.is_pending:
        raise ApiError(404, "Record not found")
    return account


@routes.get("/api/v1/accounts/verify_credentials")
async def verify_credentials(request: web.Request) -> web.Response:
    """Who the token belongs to."""
    account = await require_account(request, "read:accounts", "profile")
    async with request.app[DATABASE].read() as conn:
        entity = await Presenter(conn, request.app[URLS], account).credential_account(account)
    return json_body(entity)


@routes.patch("/api/v1/accounts/update_credentials")
async def update_credentials(request: web.Request) -> web.Response:
    """Change one's profile; followers' servers get Update(Person)."""
    account = await require_account(request, "write:accounts")
    params = await request_params(request)
    display_name = string(params, "display_name", max_length=profiles.DISPLAY_NAME_MAX)
    note = string(params, "note", max_length=profiles.NOTE_MAX)
    fields = profile_fields_param(params)
    # `hide_collections` and `source[…]` (posting defaults) are accepted and not kept yet.
    flags = {name: _option(params, name) for name in ("locked", "bot", "discoverable", "indexable")}
    avatar_file = await _avatar_upload(request)  # last: nothing is written for a bad request
    urls = request.app[URLS]
    try:
        updated = await request.app[FEDERATION].perform(
            lambda conn, now: profiles.update_profile(
                conn,
                urls,
                account,
                now,
                display_name,
                note,
                flags["locked"],
                flags["bot"],
                flags["discoverable"],
                flags["indexable"],
                fields,
                avatar_file=avatar_file,
            )
        )
    except BaseException:
        remove_files(request.app[CONFIG].data_dir, avatar_file)
        raise
    async with request.app[DATABASE].read() as conn:
        entity = await Presenter(conn, urls, updated).credential_account(updated)
    return json_body(entity)


async def _avatar_upload(request: web.Request) -> str | None:
    """The `avatar` file of a multipart update, stored as a profile picture (its file name);
    None without one. A `header` picture is refused: profiles here have none."""
    if request.content_type != "multipart/form-data":
        return None
    form = await request.post()
    if isinstance(form.get("header"), web.FileField):
        raise ApiError(422, "Header pictures are not supported by this server")
    upload = form.get("avatar")
    if not isinstance(upload, web.FileField):
        return None
    data = await asyncio.to_thread(upload.file.read, AVATAR_BYTES_MAX + 1)
    if len(data) > AVATAR_BYTES_MAX:
        raise ApiError(413, f"The avatar is larger than {AVATAR_BYTES_MAX // (1024 * 1024)} MB")
    config = request.app[CONFIG]
    try:
        return await asyncio.to_thread(store_avatar, config.data_dir, data, config.media.max_pixels)
    except MediaRejected as exc:
        raise ApiError(exc.status, f"The avatar was refused: {exc}") from None


@routes.delete("/api/v1/profile/avatar")
async def delete_avatar(request: web.Request) -> web.Response:
    """Remove one's profile picture (Mastodon 4.2); followers' servers get Update(Person)."""
    account = await require_account(request, "write:accounts")
    urls = request.app[URLS]
    updated = await request.app[FEDERATION].perform(
        lambda conn, now: profiles.update_profile(conn, urls, account, now, remove_avatar=True)
    )
    async with request.app[DATABASE].read() as conn:
        entity = await Presenter(conn, urls, updated).credential_account(updated)
    return json_body(entity)


_FIELD_KEY = re.compile(r"fields_attributes\[([^\]]{1,8})\]\[(name|value)\]")


def profile_fields_param(params: dict[str, Any]) -> list[tuple[str, str]] | None:
    """`fields_attributes` as Rails reads it (`fields_attributes[0][name]=…` form keys, or a
    JSON list or index-keyed object of {name, value}); None when not sent. Pairs with both
    halves blank are dropped, as Mastodon does; more than four, or too long, is a 422."""
    raw = params.get("fields_attributes")
    if raw is None:
        indexed: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            match = _FIELD_KEY.fullmatch(key)
            if match:
                indexed.setdefault(match.group(1), {})[match.group(2)] = value
        if not indexed:
            return None
        raw = indexed
    if isinstance(raw, dict):
        raw = [raw[key] for key in sorted(raw, key=lambda k: (len(str(k)), str(k)))]
    if not isinstance(raw, list) or len(raw) > 4 * profiles.FIELDS_MAX:
        raise ApiError(422, "fields_attributes must be a list of name and value pairs")
    pairs = [_field_pair(entry) for entry in raw]
    kept = [(name, value) for name, value in pairs if name.strip() or value.strip()]
    if len(kept) > profiles.FIELDS_MAX:
        raise ApiError(422, f"Validation failed: at most {profiles.FIELDS_MAX} profile fields")
    return kept


def _field_pair(entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict):
        raise ApiError(422, "each of fields_attributes must have a name and a value")
    name = string(entry, "name", "", max_length=profiles.FIELD_NAME_MAX) or ""
    value = string(entry, "value", "", max_length=profiles.FIELD_VALUE_MAX) or ""
    return name.strip(), value.strip()


@routes.get("/api/v1/accounts/lookup")
async def lookup(request: web.Request) -> web.Response:
    """An account by `acct` (`name`, `name@this-domain` or `name@host`, resolved if new)."""
    params = await request_params(request)
    handle = (string(params, "acct", max_length=_HANDLE_LENGTH_MAX) or "").strip().lstrip("@")
    if not handle:
        raise ApiError(422, "acct is required")
    viewer = await viewer_of(request, "read:accounts")
    # Anonymous callers get accounts this node knows: a WebFinger fetch on behalf of anyone
    # would let strangers make the node call arbitrary hosts.
    if viewer is not None:
        account = await resolve_handle(request, handle)
    else:
        async with request.app[DATABASE].read() as conn:
            account = await known_account(conn, request.app[URLS], handle)
    if account is None or account.is_pending:
        raise ApiError(404, "Record not found")
    async with request.app[DATABASE].read() as conn:
        return json_body(await Presenter(conn, request.app[URLS], viewer).account(account))


async def resolve_handle(request: web.Request, handle: str) -> Account | None:
    """`name` or `name@host` as an account (remote ones over WebFinger); None if nobody."""
    name, _, host = handle.partition("@")
    if not name or "@" in host:
        return None
    try:
        account = await request.app[FEDERATION].resolve_account(handle)
    except (LookupError, ActorUnavailable, FetchError) as exc:
        log.info("lookup of %s failed: %s", handle, exc)
        return None
    return None if account.is_instance_actor else account


def _ids_param(params: dict[str, Any], most: int = 100) -> list[int]:
    """`id[]` values that can name an account (others name nothing, so they are skipped)."""
    texts = string_list(params, "id", most)
    return [int(i) for i in texts if i.isascii() and i.isdigit() and len(i) <= 19]


@routes.get("/api/v1/accounts/relationships")
async def relationships(request: web.Request) -> web.Response:
    account = await require_account(request, "read:follows")
    ids = _ids_param(await request_params(request))
    async with request.app[DATABASE].read() as conn:
        found = [a for a in [await get_account(conn, i % 2**63) for i in ids] if a is not None]
        body = await Presenter(conn, request.app[URLS], account).relationships(found)
    return json_body(body)


@routes.get("/api/v1/accounts/familiar_followers")
async def familiar_followers(request: web.Request) -> web.Response:
    """For each account, the people the user follows who follow it too."""
    me = await require_account(request, "read:follows")
    ids = list(dict.fromkeys(_ids_param(await request_params(request), 40)))
    mine = follows.alias("mine")
    theirs = follows.alias("theirs")
    query = (
        select_accounts()
        .add_columns(theirs.c.target_account_id.label("familiar_of"))
        .join(theirs, theirs.c.account_id == accounts.c.id)
        .join(mine, mine.c.target_account_id == accounts.c.id)
        .where(
            mine.c.account_id == me.id,
            mine.c.state == "accepted",
            theirs.c.target_account_id.in_([i % 2**63 for i in ids]),
            theirs.c.state == "accepted",
            accounts.c.deleted_at.is_(None),
        )
        .order_by(theirs.c.id.desc())
    )
    async with request.app[DATABASE].read() as conn:
        rows = (await conn.execute(query)).all()
        presenter = Presenter(conn, request.app[URLS], me)
        rendered = await presenter.accounts([account_from_row(row) for row in rows])
    grouped: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for row, entity in zip(rows, rendered, strict=True):
        grouped.setdefault(row.familiar_of, []).append(entity)
    return json_body([{"id": str(i), "accounts": grouped[i]} for i in ids])


@routes.get("/api/v1/accounts/search")
async def search_accounts(request: web.Request) -> web.Response:
    """Accounts by name or handle; `resolve=true` looks up a full `name@host` remotely."""
    viewer = await require_account(request, "read:accounts")
    params = await request_params(request)
    query = (string(params, "q", max_length=_HANDLE_LENGTH_MAX) or "").strip()
    limit = min(integer(params, "limit", 40) or 40, _ACCOUNT_SEARCH_LIMIT_MAX)
    offset = integer(params, "offset", 0, high=10_000) or 0
    found = await find_accounts(
        request,
        viewer,
        query,
        limit,
        boolean(params, "resolve"),
        boolean(params, "following"),
        offset,
    )
    async with request.app[DATABASE].read() as conn:
        return json_body(await Presenter(conn, request.app[URLS], viewer).accounts(found))


async def find_accounts(
    request: web.Request,
    viewer: Account | None,
    query: str,
    limit: int,
    resolve: bool,
    following: bool = False,
    offset: int = 0,
) -> list[Account]:
    """Accounts matching a search: an exact handle first (resolved when asked), then
    accounts whose name or display name starts with the text."""
    text = query.strip().lstrip("@")
    if not text:
        return []
    exact: list[Account] = []
    if "@" in text and resolve and viewer is not None:
        resolved = await resolve_handle(request, text)
        exact = [resolved] if resolved is not None else []
    name, _, host = text.partition("@")
    prefix = _like_prefix(name.lower())
    query_rows = select_accounts().where(
        accounts.c.is_instance_actor.is_(False),
        accounts.c.deleted_at.is_(None),
        accounts.c.approved.is_(True),
        or_(
            accounts.c.username_key.like(prefix, escape="\\"),
            accounts.c.display_name.ilike(prefix, escape="\\"),
        ),
    )
    if host:
        query_rows = query_rows.where(
            accounts.c.domain.like(_like_prefix(host.lower()), escape="\\")
        )
    if following and viewer is not None:
        query_rows = query_rows.where(
            accounts.c.id.in_(
                select(follows.c.target_account_id).where(follows.c.account_id == viewer.id)
            )
        )
    query_rows = query_rows.order_by(accounts.c.domain, accounts.c.username_key)
    async with request.app[DATABASE].read() as conn:
        rows = await conn.execute(query_rows.offset(offset).limit(limit))
        matches = [account_from_row(row) for row in rows]
    exact_ids = {a.id for a in exact}
    return (exact + [a for a in matches if a.id not in exact_ids])[:limit]


def like_pattern(text: str) -> str:
    """Text to match literally in a LIKE pattern (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(text: str) -> str:
    return f"{like_pattern(text)}%"


@routes.get("/api/v1/accounts/{id}")
async def get_account_entity(request: web.Request) -> web.Response:
    viewer = await viewer_of(request, "read:accounts")
    async with request.app[DATABASE].read() as conn:
        account = await _account(conn, path_id(request))
        return json_body(await Presenter(conn, request.app[URLS], viewer).account(account))


@routes.get("/api/v1/accounts/{id}/statuses")
async def account_statuses(request: web.Request) -> web.Response:
    """An account's statuses the viewer may see, newest first."""
    viewer = await viewer_of(request, "read:statuses")
    params = await request_params(request)
    page = page_request(params)
    exclude_replies = boolean(params, "exclude_replies")
    exclude_reblogs = boolean(params, "exclude_reblogs")
    only_media = boolean(params, "only_media")
    pinned = boolean(params, "pinned")
    tagged = string(params, "tagged", max_length=100)
    async with request.app[DATABASE].read() as conn:
        author = await _account(conn, path_id(request))
        if viewer and await is_blocked_by(conn, author, viewer):
            found = []
        elif pinned:
            found = await pins.pinned_statuses(conn, author, page, tagged)
        else:
            found = await account_timeline(
                conn, viewer, author, page, exclude_replies, exclude_reblogs, tagged, only_media
            )
        body = await Presenter(conn, request.app[URLS], viewer).statuses(found)
        if viewer is not None and viewer.id == author.id:
            await mark_pinned(conn, viewer, body)
    return paginated(request, body, [s.id for s in found])


async def is_blocked_by(conn: AsyncConnection, author: Account, viewer: Account) -> bool:
    """Whether the author blocks the viewer (Mastodon then shows them none of its posts)."""
    query = select(blocks.c.id).where(
        blocks.c.account_id == author.id, blocks.c.target_account_id == viewer.id
    )
    return (await conn.execute(query.limit(1))).first() is not None


async def mark_pinned(conn: AsyncConnection, viewer: Account, body: list[dict[str, Any]]) -> None:
    """Set `pinned` on the viewer's own statuses they have pinned."""
    own = [int(entity["id"]) for entity in body if entity["account"]["id"] == str(viewer.id)]
    pinned = await pins.pinned_ids(conn, viewer.id, own)
    for entity in body:
        if int(entity["id"]) in pinned:
            entity["pinned"] = True


async def _follow_page(
    conn: AsyncConnection, page: PageRequest, where: Any, other_column: Any
) -> tuple[list[Account], list[int]]:
    query = (
        select_accounts()
        .add_columns(follows.c.id.label("cursor"))
        .join(follows, other_column == accounts.c.id)
        .where(where)
    )
    rows = newest_first((await conn.execute(paged(query, follows.c.id, page))).all(), page)
    return [account_from_row(row) for row in rows], [row.cursor for row in rows]


@routes.get("/api/v1/accounts/{id}/featured_tags")
async def account_featured_tags(request: web.Request) -> web.Response:
    """Hashtags an account features (Kith has none yet)."""
    await viewer_of(request, "read:accounts")
    async with request.app[DATABASE].read() as conn:
        await _account(conn, path_id(request))
    return json_body([])


@routes.get("/api/v1/accounts/{id}/lists")
async def account_lists(request: web.Request) -> web.Response:
    """The user's lists holding this account (Kith has no lists yet)."""
    await require_account(request, "read:lists")
    async with request.app[DATABASE].read() as conn:
        await _account(conn, path_id(request))
    return json_body([])


async def _relation_list(request: web.Request, own: Any, other: Any) -> web.Response:
    viewer = await viewer_of(request, "read:accounts")
    page = page_request(await request_params(request), default=40, most=80)
    async with request.app[DATABASE].read() as conn:
        account = await _account(conn, path_id(request))
        found, cursors = await _follow_page(
            conn, page, (own == account.id) & (follows.c.state == "accepted"), other
        )
        body = await Presenter(conn, request.app[URLS], viewer).accounts(found)
    return paginated(request, body, cursors)


@routes.get("/api/v1/accounts/{id}/followers")
async def followers(request: web.Request) -> web.Response:
    return await _relation_list(request, follows.c.target_account_id, follows.c.account_id)


@routes.get("/api/v1/accounts/{id}/following")
async def following(request: web.Request) -> web.Response:
    return await _relation_list(request, follows.c.account_id, follows.c.target_account_id)


# --- acting on another account --------------------------------------------------------------

Act = Callable[[AsyncConnection, Urls, Account, Account, datetime, dict[str, Any]], Awaitable[Any]]


async def _act(request: web.Request, scope: str, act: Act) -> web.Response:
    """Run an action on the account in the path; answer the Relationship as it now is."""
    me = await require_account(request, scope)
    params = await request_params(request)
    target_id = path_id(request)
    urls = request.app[URLS]

    async def action(conn: AsyncConnection, now: datetime) -> Any:
        target = await _account(conn, target_id)
        returned = await act(conn, urls, me, target, now, params)
        return returned if isinstance(returned, list) else []

    try:
        await request.app[FEDERATION].perform(action)
    except InvalidAction as exc:
        raise ApiError(422, str(exc)) from None
    async with request.app[DATABASE].read() as conn:
        target = await _account(conn, target_id)
        body = (await Presenter(conn, urls, me).relationships([target]))[0]
    return json_body(body)


def _option(params: dict[str, Any], name: str) -> bool | None:
    return boolean(params, name) if name in params else None


def _duration(params: dict[str, Any]) -> timedelta | None:
    """A mute's `duration` in seconds; 0 or none: until unmuted."""
    seconds = integer(params, "duration", 0, high=int(mutes.DURATION_MAX.total_seconds()))
    return timedelta(seconds=seconds) if seconds else None


_ACTIONS: dict[str, tuple[str, Act]] = {
    "follow": (
        "write:follows",
        lambda conn, urls, me, target, now, params: graph.follow(
            conn, urls, me, target, now, _option(params, "reblogs"), _option(params, "notify")
        ),
    ),
    "unfollow": (
        "write:follows",
        lambda conn, urls, me, target, now, params: graph.unfollow(conn, urls, me, target, now),
    ),
    "remove_from_followers": (
        "write:follows",
        lambda conn, urls, me, target, now, params: graph.remove_from_followers(
            conn, urls, me, target, now
        ),
    ),
    "block": (
        "write:blocks",
        lambda conn, urls, me, target, now, params: graph.block(conn, urls, me, target, now),
    ),
    "unblock": (
        "write:blocks",
        lambda conn, urls, me, target, now, params: graph.unblock(conn, urls, me, target, now),
    ),
    "mute": (
        "write:mutes",
        lambda conn, urls, me, target, now, params: mutes.mute(
            conn, me, target, boolean(params, "notifications", True), now, _duration(params)
        ),
    ),
    "unmute": (
        "write:mutes",
        lambda conn, urls, me, target, now, params: mutes.unmute(conn, me, target),
    ),
}


def _action_handler(scope: str, act: Act) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return await _act(request, scope, act)

    return handler


for _name, (_scope, _action) in _ACTIONS.items():
    routes.post(f"/api/v1/accounts/{{id}}/{_name}")(_action_handler(_scope, _action))
