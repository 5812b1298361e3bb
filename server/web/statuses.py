"""Posts in the browser: compose (text, reply, content warning, visibility, pictures), a post's
page with its thread, its card for kith.js, and favourite, boost and bookmark."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.addressing import VISIBILITIES, is_public
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter
from server.api.mastodon.statuses import resolve_mentions, visible_status
from server.appkeys import DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, find_account
from server.media import (
    MediaRejected,
)
from server.social import interactions
from server.social.graph import InvalidAction
from server.social.media import DESCRIPTION_LENGTH_MAX, InvalidMedia
from server.social.posting import TEXT_LENGTH_MAX, InvalidPost, publish_status
from server.social.statuses import Status, status_by_id
from server.social.timelines import ancestors, descendants
from server.social.visibility import can_see
from server.web.pages import (
    FormErrors,
    is_partial,
    local_path,
    page,
    read_form,
    render,
    render_fragment,
    require_viewer,
    see_other,
    text_field,
    viewer,
)
from server.web.uploads import store_pictures

routes = web.RouteTableDef()
SPOILER_LENGTH_MAX = 500
MEDIA_PER_POST_MAX = 4
_INTERACTIONS = ("favourite", "unfavourite", "reblog", "unreblog", "bookmark", "unbookmark")


async def entity_of(request: web.Request, me: Account | None, status_id: int) -> dict[str, Any]:
    """A status the viewer may see, as the Mastodon API shows it (404 page otherwise)."""
    async with request.app[DATABASE].read() as conn:
        status = await visible_status(conn, me, status_id)
        return await Presenter(conn, request.app[URLS], me).status(status)


def _status_id(request: web.Request) -> int:
    raw = request.match_info["status_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) >= 2**63:
        raise ApiError(404, "Not found", "There is no such post.")
    return int(raw)


# --- reading ---------------------------------------------------------------------------------


@routes.get("/statuses/{status_id}/card")
@page
async def card(request: web.Request) -> web.Response:
    """One post's card, as the feeds show it (kith.js puts new posts in place with it)."""
    me = await require_viewer(request)
    entity = await entity_of(request, me, _status_id(request))
    return await render_fragment(request, "web/card.html", entity=entity, prepend=False)


@routes.get("/statuses/{status_id}")
@page
async def status_by_number(request: web.Request) -> web.StreamResponse:
    """A post by its number alone: sent on to its page under its author's name."""
    me = await viewer(request)
    entity = await entity_of(request, me, _status_id(request))
    raise web.HTTPSeeOther(f"/@{entity['account']['acct']}/{entity['id']}")


async def thread_page(request: web.Request, acct: str, status_id: int) -> web.Response:
    """A post and its thread. Anonymous visitors see local public posts (as before)."""
    me = await viewer(request)
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        status = await status_by_id(conn, status_id)
        if status is None or status.reblog_of_id is not None:
            raise ApiError(404, "Not found", "There is no such post.")
        if me is None:
            author = await find_account(conn, acct)
            if author is None or author.is_suspended or status.account_id != author.id:
                raise ApiError(404, "Not found", "There is no such post.")
            if not is_public(status.visibility):
                raise ApiError(404, "Not found", "There is no such post.")
        elif not await can_see(conn, me, status):
            raise ApiError(404, "Not found", "There is no such post.")
        above = [s for s in await ancestors(conn, status) if await can_see(conn, me, s)]
        below = [s for s in await descendants(conn, status) if await can_see(conn, me, s)]
        rendered = await Presenter(conn, urls, me).statuses([*above, status, *below])
    entity = rendered[len(above)]
    if entity["account"]["acct"].lower() != acct.lower() or entity["account"].get("suspended"):
        raise ApiError(404, "Not found", "There is no such post.")
    return await render(
        request,
        "web/status.html",
        viewer=me,
        entity=entity,
        ancestors=rendered[: len(above)],
        descendants=rendered[len(above) + 1 :],
        mentions=_reply_mentions(entity, me),
    )


def _reply_mentions(entity: dict[str, Any], me: Account | None) -> str:
    """A reply starts by naming the author and the people the post mentions (not oneself)."""
    if me is None:
        return ""
    names = [entity["account"]["acct"], *(m["acct"] for m in entity.get("mentions", []))]
    own = {me.username.lower()}
    kept = [n for n in dict.fromkeys(names) if n.lower() not in own]
    return "".join(f"@{n} " for n in kept)


# --- composing -------------------------------------------------------------------------------


@routes.get("/compose")
@page
async def compose_page(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    raw = request.query.get("in_reply_to", "")
    reply_to = None
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        reply_to = await entity_of(request, me, int(raw))
    values = {"status": _reply_mentions(reply_to, me)} if reply_to else {}
    return await render(
        request, "web/compose.html", viewer=me, reply_to=reply_to, errors=None, values=values
    )


@routes.post("/statuses")
@page
async def compose(request: web.Request) -> web.Response:
    """Publish a post; bad input is said next to its field and publishes nothing."""
    me = await require_viewer(request)
    form = await read_form(request)
    values = {
        name: text_field(form, name, TEXT_LENGTH_MAX)
        for name in ("status", "spoiler_text", "visibility", "media_description", "in_reply_to_id")
    }
    files = [f for f in form.getall("media", []) if isinstance(f, web.FileField) and f.filename]
    errors = _check(values, files)
    reply_to = None
    if values["in_reply_to_id"]:
        reply_to = await _parent(request, me, values["in_reply_to_id"])
    if not errors:
        try:
            entity = await _publish(request, me, values, files, reply_to)
        except (InvalidPost, InvalidMedia, MediaRejected) as exc:
            errors = FormErrors({"media" if isinstance(exc, MediaRejected) else "status": str(exc)})
    if errors:
        return await _compose_again(request, me, errors, values, reply_to, 422)
    if is_partial(request):
        return await render_fragment(
            request,
            "web/compose_result.html",
            entity=entity,
            errors=None,
            values={"visibility": values["visibility"]} if reply_to is None else {},
            reply_to=reply_to,
            heading=reply_to is not None,
        )
    return see_other(local_path(form.get("next"), "/"))


def _check(values: dict[str, str], files: list[web.FileField]) -> FormErrors:
    errors = FormErrors()
    text = values["status"]
    if not text.strip() and not files:
        errors["status"] = "Write something or add a picture."
    elif len(text) > TEXT_LENGTH_MAX:
        errors["status"] = f"A post has at most {TEXT_LENGTH_MAX} characters."
    if len(values["spoiler_text"]) > SPOILER_LENGTH_MAX:
        errors["spoiler_text"] = f"A content warning has at most {SPOILER_LENGTH_MAX} characters."
    if (values["visibility"] or "public") not in VISIBILITIES:
        errors["visibility"] = "Choose who can see the post."
    if len(files) > MEDIA_PER_POST_MAX:
        errors["media"] = f"A post has at most {MEDIA_PER_POST_MAX} pictures."
    if len(values["media_description"]) > DESCRIPTION_LENGTH_MAX:
        errors["media_description"] = f"At most {DESCRIPTION_LENGTH_MAX} characters."
    return errors


async def _parent(request: web.Request, me: Account, raw: str) -> dict[str, Any]:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "Not found", "The post you reply to is not there.")
    return await entity_of(request, me, int(raw))


async def _compose_again(
    request: web.Request,
    me: Account,
    errors: FormErrors,
    values: dict[str, str],
    reply_to: dict[str, Any] | None,
    status: int,
) -> web.Response:
    if is_partial(request):
        return await render_fragment(
            request,
            "web/compose_result.html",
            status,
            entity=None,
            errors=errors,
            values=values,
            reply_to=reply_to,
            heading=reply_to is not None,
        )
    return await render(
        request,
        "web/compose.html",
        status,
        viewer=me,
        errors=errors,
        values=values,
        reply_to=reply_to,
    )


async def _publish(
    request: web.Request,
    me: Account,
    values: dict[str, str],
    files: list[web.FileField],
    reply_to: dict[str, Any] | None,
) -> dict[str, Any]:
    """Pictures first (each processed as an upload), then the post in one unit of work."""
    media_ids = await store_pictures(request, me, files, values["media_description"] or None)
    text = values["status"]
    mentioned = await resolve_mentions(request, text)
    urls = request.app[URLS]
    parent_id = int(reply_to["id"]) if reply_to else None

    async def publish(conn: AsyncConnection, now: datetime) -> Any:
        parent = await visible_status(conn, me, parent_id) if parent_id else None
        return await publish_status(
            conn,
            urls,
            me,
            text,
            now,
            values["visibility"] or "public",
            mentioned,
            parent,
            values["spoiler_text"],
            bool(values["spoiler_text"]),
            None,
            media_ids,
        )

    status = await request.app[FEDERATION].perform(publish)
    return await entity_of(request, me, status.id)


# --- favourite, boost, bookmark --------------------------------------------------------------

Act = Callable[[AsyncConnection, Account, Status, datetime], Awaitable[Any]]


def _act(request: web.Request, verb: str) -> Act:
    urls = request.app[URLS]

    async def unbookmark(conn: AsyncConnection, me: Account, status: Status, now: datetime) -> Any:
        await interactions.unbookmark(conn, me, status)

    acts: dict[str, Act] = {
        "favourite": lambda conn, me, s, now: interactions.like(conn, urls, me, s, now),
        "unfavourite": lambda conn, me, s, now: interactions.unlike(conn, urls, me, s, now),
        "reblog": lambda conn, me, s, now: interactions.boost(conn, urls, me, s, now),
        "unreblog": lambda conn, me, s, now: interactions.unboost(conn, urls, me, s, now),
        "bookmark": interactions.bookmark,
        "unbookmark": unbookmark,
    }
    return acts[verb]


@routes.post("/statuses/{status_id}/{verb}")
@page
async def interact(request: web.Request) -> web.Response:
    """Favourite, boost or bookmark (or undo); the card comes back as it now is."""
    verb = request.match_info["verb"]
    if verb not in _INTERACTIONS:
        raise ApiError(404, "Not found", "There is no such action.")
    me = await require_viewer(request)
    form = await read_form(request)
    status_id = _status_id(request)
    act = _act(request, verb)

    async def action(conn: AsyncConnection, now: datetime) -> Any:
        status = await visible_status(conn, me, status_id)
        if status.reblog_of_id is not None:  # acting on a boost acts on its original
            status = await visible_status(conn, me, status.reblog_of_id)
        returned = await act(conn, me, status, now)
        if verb == "reblog":  # boost returns (status, outbound)
            return None, returned[1] if isinstance(returned, tuple) else []
        return None, returned if isinstance(returned, list) else []

    try:
        await request.app[FEDERATION].perform(action)
    except InvalidAction as exc:
        raise ApiError(422, "That did not work", str(exc)) from None
    if is_partial(request):
        entity = await entity_of(request, me, status_id)
        return await render_fragment(request, "web/card.html", entity=entity, prepend=False)
    return see_other(local_path(form.get("next"), "/"))
