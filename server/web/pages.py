"""What every page of the web client shares: the signed-in user, rendering in the layout,
forms (CSRF), fragments for the script, redirects, and errors as pages."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import func, select

from server.api.errors import ApiError
from server.api.web import html_response, render_page
from server.appkeys import CONFIG, DATABASE, TEMPLATES, URLS
from server.identity.accounts import Account
from server.social.notifications import seen_by
from server.storage.tables import markers, notifications
from server.web.sessions import cookies, csrf_ok, csrf_token_for, form_cookie, session_grant

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PARTIAL_HEADER = "X-Kith-Partial"  # kith.js asks for a fragment instead of a page
_UNREAD_SHOWN_MAX = 99
_ANONYMOUS_COOKIE_S = 24 * 3600
# A visitor's CSRF token when the page also sets their first anonymous cookie.
_ANONYMOUS_TOKEN = web.RequestKey("kith_anonymous_form", str)


class FormErrors(dict[str, str]):
    """Messages by field name ("" for the whole form), shown next to the fields."""


async def viewer(request: web.Request) -> Account | None:
    """The signed-in user of this request (the session cookie), or None."""
    grant = await session_grant(request)
    return grant.account if grant is not None else None


async def require_viewer(request: web.Request) -> Account:
    """The signed-in user; anyone else is sent to sign in and brought back here."""
    account = await viewer(request)
    if account is None:
        target = request.path_qs if request.method == "GET" else "/"
        raise web.HTTPSeeOther(f"/auth/sign_in?next={quote(target, safe='')}")
    return account


def is_partial(request: web.Request) -> bool:
    """Whether kith.js asked for a fragment (it swaps it in) rather than a whole page."""
    return request.headers.get(PARTIAL_HEADER) == "1"


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """A POSTed form, after its CSRF token and Origin are checked (403 page otherwise)."""
    form = await request.post()
    submitted = form.get("csrf_token")
    if not isinstance(submitted, str) or not csrf_ok(request, submitted):
        raise ApiError(403, "This form has expired", "Go back, reload the page and send it again.")
    return form


def text_field(form: MultiDictProxy[Any], name: str, max_length: int = 10_000) -> str:
    """A text field's value ('' when missing or not text); longer values are cut, and the
    caller's own length check reports them."""
    value = form.get(name, "")
    return value[: max_length + 1] if isinstance(value, str) else ""


def local_path(value: object, default: str = "/") -> str:
    """A `next` target: a path on this node only (never `//host` or a scheme)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(c) < 32 for c in value) or urlsplit(value).netloc:
        return default
    return value


def see_other(location: str) -> web.Response:
    """A 303 to the page to show next (Post/Redirect/Get); returned, so cookies can be set."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


async def context(request: web.Request, **values: Any) -> dict[str, Any]:
    """What every template of the web client may use besides its own values."""
    account = values.pop("viewer", None) or await viewer(request)
    found = form_cookie(request)
    return {
        "viewer": account,
        "csrf_token": csrf_token_for(found[1]) if found else request[_ANONYMOUS_TOKEN],
        "unread": await _unread(request, account) if account is not None else 0,
        "current_path": request.path_qs,
        "registrations": request.app[CONFIG].instance.registrations,
        **values,
    }


async def render(
    request: web.Request, template: str, http_status: int = 200, **values: Any
) -> web.Response:
    """A whole page in the layout (`web/layout.html`), with the user, CSRF token and nav."""
    anonymous = _anonymous_cookie(request)
    page = render_page(request, template, http_status, **await context(request, **values))
    return _finish(request, page, anonymous)


async def render_fragment(
    request: web.Request, template: str, http_status: int = 200, **values: Any
) -> web.Response:
    """Part of a page for kith.js: top-level elements with ids replace those in the page."""
    anonymous = _anonymous_cookie(request)
    text = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            instance=request.app[CONFIG].instance,
            urls=request.app[URLS],
            **await context(request, **values),
        )
    )
    return _finish(request, html_response(text, http_status), anonymous)


def _anonymous_cookie(request: web.Request) -> str | None:
    """A visitor's forms before signing in are tied to a random cookie set with the page."""
    if form_cookie(request) is not None:
        request[_ANONYMOUS_TOKEN] = ""
        return None
    value = secrets.token_urlsafe(32)
    request[_ANONYMOUS_TOKEN] = csrf_token_for(value)
    return value


def _finish(request: web.Request, response: web.Response, anonymous: str | None) -> web.Response:
    if anonymous is not None:
        names = cookies(request)
        names.set(response, names.anonymous, anonymous, _ANONYMOUS_COOKIE_S)
    # A signed-in page is the user's own: never kept by shared caches or the back button's
    # cache after signing out.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Accept, Cookie"
    return response


async def _unread(request: web.Request, account: Account) -> int:
    """Notifications newer than the user's `notifications` marker (shown in the nav)."""
    async with request.app[DATABASE].read() as conn:
        last_read = await conn.scalar(
            select(markers.c.last_read_id).where(
                markers.c.account_id == account.id, markers.c.timeline == "notifications"
            )
        )
        newer = (
            select(notifications.c.id)
            .where(seen_by(account), notifications.c.id > (last_read or 0))
            .limit(_UNREAD_SHOWN_MAX + 1)
        )
        return int(await conn.scalar(select(func.count()).select_from(newer.subquery())) or 0)


def page(handler: Handler) -> Handler:
    """A web client route: its refusals (ApiError) are shown as pages, not JSON."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            if exc.status == 406:
                raise  # content negotiation: the asker wants no HTML
            return await render(
                request,
                "web/error.html",
                exc.status,
                title=exc.error,
                message=exc.description or "",
            )

    return wrapped
