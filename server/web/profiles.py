"""People: profiles (`/@name`, `/@name@host`) with their posts, follow and unfollow, answering
follow requests, and search (a `@name@host` is looked up on its server)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from protocol.addressing import is_public
from protocol.as2 import is_http_url
from server.api.activitypub import ACTOR_OFFERS, HTML
from server.api.errors import ApiError
from server.api.mastodon.accounts import find_accounts, is_blocked_by, resolve_handle
from server.api.mastodon.entities import Presenter
from server.api.negotiation import require
from server.appkeys import DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, get_account
from server.social import graph
from server.social.graph import InvalidAction
from server.social.remote_accounts import known_account
from server.social.statuses import Status, status_by_id
from server.social.timelines import account_timeline
from server.web.pages import (
    FormErrors,
    is_partial,
    page,
    read_form,
    render,
    render_fragment,
    require_viewer,
    see_other,
    viewer,
)
from server.web.statuses import thread_page
from server.web.timelines import older, page_of

routes = web.RouteTableDef()
_HANDLE_LENGTH_MAX = 300
_QUERY_LENGTH_MAX = 2048
NOT_FOUND = ApiError(404, "Not found", "There is nobody by that name here.")


async def _account(request: web.Request, me: Account | None, acct: str) -> Account:
    """`name` (local) or `name@host`: known accounts for anyone, looked up on their server
    for a signed-in user (a stranger must not make the node call arbitrary hosts)."""
    acct = acct.lstrip("@")
    if not acct or len(acct) > _HANDLE_LENGTH_MAX or "\x00" in acct:
        raise NOT_FOUND
    if me is not None and "@" in acct:
        account = await resolve_handle(request, acct)
    else:
        async with request.app[DATABASE].read() as conn:
            account = await known_account(conn, request.app[URLS], acct)
    if account is None or account.is_instance_actor or account.is_pending:
        raise NOT_FOUND
    if me is None and not account.is_local:
        raise NOT_FOUND  # a stranger sees this node's own people only
    return account


@routes.get("/@{acct}")
@page
async def profile(request: web.Request) -> web.Response:
    """A profile and its posts; peers asking for AS2 here are sent to the actor."""
    me = await viewer(request)
    account = await _account(request, me, request.match_info["acct"])
    urls = request.app[URLS]
    if require(request.headers.get("Accept"), ACTOR_OFFERS) != HTML:
        raise web.HTTPFound(urls.actor(account), headers={"Vary": "Accept"})
    if account.is_deleted or account.is_suspended:
        return await render(request, "gone.html", 410, account=account)
    async with request.app[DATABASE].read() as conn:
        presenter = Presenter(conn, urls, me)
        blocked = me is not None and await is_blocked_by(conn, account, me)
        found: list[Status] = (
            [] if blocked else await account_timeline(conn, me, account, page_of(request))
        )
        shown = await presenter.statuses(found)
        entity = await presenter.account(account)
        relationship = (await presenter.relationships([account]))[0] if me else None
    return await render(
        request,
        "web/profile.html",
        viewer=me,
        account=account,
        entity=entity,
        relationship=relationship,
        handle=urls.handle(account),
        actor_url=urls.actor(account),
        statuses=shown,
        more=older(request, [s.id for s in found]),
    )


@routes.get("/@{acct}/{status_id:[0-9]+}")
@page
async def status_page(request: web.Request) -> web.Response:
    """A post's page with its thread; peers asking for AS2 are sent to its Note."""
    raw = request.match_info["status_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "Not found", "There is no such post.")
    if require(request.headers.get("Accept"), ACTOR_OFFERS) != HTML:
        async with request.app[DATABASE].read() as conn:
            status = await status_by_id(conn, int(raw))
        if status is None or not is_public(status.visibility):
            raise ApiError(404, "Not found", "There is no such post.")
        raise web.HTTPFound(status.uri, headers={"Vary": "Accept"})
    return await thread_page(request, request.match_info["acct"], int(raw))


# --- following -------------------------------------------------------------------------------


async def _follow_action(request: web.Request, follow: bool) -> web.Response:
    me = await require_viewer(request)
    await read_form(request)
    target = await _account(request, me, request.match_info["acct"])
    urls = request.app[URLS]

    async def action(conn: AsyncConnection, now: datetime) -> Any:
        if follow:
            return await graph.follow(conn, urls, me, target, now)
        return await graph.unfollow(conn, urls, me, target, now)

    try:
        await request.app[FEDERATION].perform(action)
    except InvalidAction as exc:
        raise ApiError(422, "That did not work", str(exc)) from None
    if is_partial(request):
        async with request.app[DATABASE].read() as conn:
            presenter = Presenter(conn, urls, me)
            entity = await presenter.account(target)
            relationship = (await presenter.relationships([target]))[0]
        return await render_fragment(
            request, "web/_follow.html", viewer=me, entity=entity, relationship=relationship
        )
    return see_other(f"/@{target.acct}")


@routes.post("/@{acct}/follow")
@page
async def follow(request: web.Request) -> web.Response:
    return await _follow_action(request, True)


@routes.post("/@{acct}/unfollow")
@page
async def unfollow(request: web.Request) -> web.Response:
    return await _follow_action(request, False)


@routes.post("/follow_requests/{account_id:[0-9]+}/{answer:authorize|reject}")
@page
async def answer_request(request: web.Request) -> web.Response:
    """Accept or reject someone who asked to follow (a locked account)."""
    me = await require_viewer(request)
    await read_form(request)
    raw = request.match_info["account_id"]
    accept = request.match_info["answer"] == "authorize"
    urls = request.app[URLS]

    async def action(conn: AsyncConnection, now: datetime) -> Any:
        follower = await get_account(conn, int(raw)) if raw.isdigit() and len(raw) <= 18 else None
        if follower is None:
            raise InvalidAction("there is no such account")
        return await graph.answer_follow_request(conn, urls, me, follower, accept, now)

    try:
        await request.app[FEDERATION].perform(action)
    except InvalidAction as exc:
        raise ApiError(404, "No such follow request", str(exc)) from None
    if is_partial(request):
        # The request's line goes: an empty element with its id replaces it.
        return await render_fragment(request, "web/request_answered.html", account_id=raw)
    return see_other("/notifications")


# --- search ----------------------------------------------------------------------------------


@routes.get("/search")
@page
async def search(request: web.Request) -> web.Response:
    """People by `@name@host` (looked up on their server), by name here, or a post by URL."""
    me = await require_viewer(request)
    query = request.query.get("q", "").strip()
    errors = FormErrors()
    if len(query) > _QUERY_LENGTH_MAX:
        errors["q"] = f"A search has at most {_QUERY_LENGTH_MAX} characters."
    people: list[Account] = []
    statuses: list[Status] = []
    if query and not errors:
        if is_http_url(query):
            found = await _resolve_url(request, query)
            if isinstance(found, Account):
                people = [found]
            elif isinstance(found, Status):
                statuses = [found]
        else:
            people = await find_accounts(request, me, query, 20, resolve=True)
    async with request.app[DATABASE].read() as conn:
        presenter = Presenter(conn, request.app[URLS], me)
        rendered_people = await presenter.accounts(people)
        rendered_statuses = await presenter.statuses(statuses)
    return await render(
        request,
        "web/search.html",
        422 if errors else 200,
        viewer=me,
        query=query[:_QUERY_LENGTH_MAX],
        errors=errors,
        people=rendered_people,
        statuses=rendered_statuses,
    )


async def _resolve_url(request: web.Request, url: str) -> Account | Status | None:
    try:
        return await request.app[FEDERATION].resolve_url(url)
    except (LookupError, ActorUnavailable, FetchError):
        return None
