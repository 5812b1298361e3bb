"""The pages a browser sees: the front page, public profiles and posts, payment request links."""

from __future__ import annotations

from aiohttp import web

from payments import requests
from payments.money import format_amount
from server.api.activitypub import ACTOR_OFFERS, HTML, as2_response
from server.api.errors import ApiError
from server.api.negotiation import require
from server.appkeys import CLOCK, CONFIG, DATABASE, FEDERATION, TEMPLATES, URLS
from server.identity.accounts import get_account
from server.identity.invites import VALID, invite_by_code

routes = web.RouteTableDef()

# Pages load only our own script (server/static/kith.js, never inline), styles and images
# (ours and the /media/ files we serve); the script talks only to this node (fetch and the
# streaming WebSocket: CSP 3's 'self' covers ws: and wss: to the same host).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Vary": "Accept",
}


def render_page(
    request: web.Request, template: str, http_status: int = 200, **context: object
) -> web.Response:
    """A page from a template, with the security headers every page carries."""
    page = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(instance=request.app[CONFIG].instance, urls=request.app[URLS], **context)
    )
    return html_response(page, http_status)


def html_response(text: str, http_status: int = 200) -> web.Response:
    """HTML with the security headers every page (and page fragment) carries."""
    return web.Response(
        text=text, status=http_status, content_type="text/html", headers=PAGE_HEADERS
    )


@routes.get("/about")
async def front_page(request: web.Request) -> web.Response:
    """What this node is, for a person who opens its address."""
    return render_page(request, "index.html")


@routes.get("/payments/requests/{token}")
async def payment_request_page(request: web.Request) -> web.Response:
    """A payment request by its link: the signed document for peers, a page for people.
    Anyone with the (unguessable) link may see it, as with a payment link."""
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        record = await requests.request_by_uri(conn, urls.base_url + request.path)
        payee = await get_account(conn, record.payee_account_id) if record else None
    if record is None or payee is None or not record.is_ours:
        raise ApiError(404, "not found", "no such payment request")
    if require(request.headers.get("Accept"), ACTOR_OFFERS) != HTML:
        return as2_response(record.document, request.headers.get("Accept"))
    currencies = request.app[FEDERATION].payments.currencies
    return render_page(
        request,
        "payment_request.html",
        record=record,
        state=record.state(request.app[CLOCK]()).value,
        amount=format_amount(record.amount, currencies.get(record.currency)),
        payee_name=payee.display_name or payee.username,
        payee_handle=urls.handle(payee),
    )


@routes.get("/invite/{code}")
async def invite_page(request: web.Request) -> web.Response:
    """An invite link (`kith invite create` prints it): the code to give an app at sign-up."""
    async with request.app[DATABASE].read() as conn:
        invite = await invite_by_code(conn, request.match_info["code"])
    if invite is None:
        raise ApiError(404, "not found", "no such invite")
    state = invite.state(request.app[CLOCK]())
    if request.app[CONFIG].instance.registrations == "closed":
        state = "sign-ups are closed"
    return render_page(
        request,
        "invite.html",
        http_status=200 if state == VALID else 410,
        usable=state == VALID,
        state=state,
        code=invite.code,
        expires_at=invite.expires_at.strftime("%Y-%m-%d %H:%M") if invite.expires_at else None,
    )
