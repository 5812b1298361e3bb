"""The pages a browser sees: the node's front page and public profiles."""

from __future__ import annotations

from aiohttp import web

from protocol.addressing import is_public
from server.api.activitypub import ACTOR_OFFERS, HTML
from server.api.errors import ApiError
from server.api.negotiation import require
from server.api.params import path_id
from server.appkeys import CONFIG, DATABASE, TEMPLATES, URLS
from server.identity.accounts import find_account
from server.social.statuses import status_by_id
from server.social.text import plain_text_to_html

routes = web.RouteTableDef()

# Pages carry no scripts yet and load only our own styles and images.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def render_page(
    request: web.Request, template: str, http_status: int = 200, **context: object
) -> web.Response:
    """A page from a template, with the security headers every page carries."""
    page = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(instance=request.app[CONFIG].instance, urls=request.app[URLS], **context)
    )
    return web.Response(
        text=page,
        status=http_status,
        content_type="text/html",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Vary": "Accept",
        },
    )


@routes.get("/")
@routes.get("/about")
async def front_page(request: web.Request) -> web.Response:
    """What this node is, for a person who opens its address."""
    return render_page(request, "index.html")


@routes.get("/@{username}")
async def profile_page(request: web.Request) -> web.Response:
    """A public profile; peers asking for AS2 here are sent to the actor id."""
    async with request.app[DATABASE].read() as conn:
        account = await find_account(conn, request.match_info["username"])
    if account is None or account.is_instance_actor:
        raise ApiError(404, "not found", "no such account")
    urls = request.app[URLS]
    if require(request.headers.get("Accept"), ACTOR_OFFERS) != HTML:
        raise web.HTTPFound(urls.actor(account), headers={"Vary": "Accept"})
    if account.is_deleted:
        return render_page(request, "gone.html", http_status=410, account=account)
    return render_page(
        request,
        "profile.html",
        account=account,
        handle=urls.handle(account),
        note_html=plain_text_to_html(account.note),
    )


@routes.get("/@{username}/{status_id:[0-9]+}")
async def status_page(request: web.Request) -> web.Response:
    """A public post's page; peers asking for AS2 are sent to its Note."""
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        account = await find_account(conn, request.match_info["username"])
        status = await status_by_id(conn, path_id(request, "status_id"))
    if (
        account is None
        or status is None
        or status.account_id != account.id
        or status.reblog_of_id is not None
        or not is_public(status.visibility)
    ):
        raise ApiError(404, "not found", "no such post")
    if require(request.headers.get("Accept"), ACTOR_OFFERS) != HTML:
        raise web.HTTPFound(status.uri, headers={"Vary": "Accept"})
    return render_page(
        request, "status.html", account=account, handle=urls.handle(account), status=status
    )
