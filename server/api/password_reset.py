"""Password resets by email: an API for apps and the pages the emailed link opens.

`POST /api/kith/v1/password_reset` (or the form at /auth/password/new, Mastodon's path) asks
for a link; the answer is the same whether or not an account has that address, and the
lookup and the mail happen after it (`ResetRequests`), so neither the answer nor its timing
tells. The link opens /auth/password/edit?reset_password_token=…, whose form (or
`POST /api/kith/v1/password_reset/confirm`) sets the new password, once, within the hour.
Without [smtp] there is no mail: both say the operator sets passwords
(`kith user reset-password`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import quote

from aiohttp import web

from server.api.errors import ApiError
from server.api.mastodon.registrations import count_attempt, invalid
from server.api.params import request_params, string
from server.api.ratelimit import RateLimiter
from server.api.responses import json_body
from server.api.web import render_page
from server.appkeys import CLOCK, CONFIG, DATABASE, URLS
from server.clock import Clock
from server.identity.password_resets import (
    RESET_LIFETIME,
    TOKEN_LENGTH_MAX,
    forget_old_resets,
    issue_reset,
    reset_is_usable,
    use_reset,
)
from server.identity.passwords import PASSWORD_LENGTH_MIN, hash_password
from server.identity.registration import (
    EMAIL_LENGTH_MAX,
    FieldError,
    normalize_email,
    password_errors,
)
from server.mail import Mail, Mailer, MailError
from server.storage.engine import Database
from server.urls import Urls

log = logging.getLogger("kith.password_reset")
routes = web.RouteTableDef()
NO_MAIL = "Password reset by email is not available on this server"
NO_MAIL_HINT = (
    "no mail server is configured: the operator sets a new password with "
    "`kith user reset-password NAME`"
)
# Requests for one address, whoever sends them (Mastodon: 5 per 30 minutes).
_PER_ADDRESS = 5
_PER_ADDRESS_WINDOW = timedelta(minutes=30)
_TEXT_MAX = 2000


class ResetRequests:
    """Reset requests worked off the request path: looked up, stored and mailed by a task."""

    def __init__(self, db: Database, mailer: Mailer, urls: Urls, clock: Clock, name: str) -> None:
        self.db = db
        self.mailer = mailer
        self.urls = urls
        self.clock = clock
        self.name = name
        self.per_address = RateLimiter(_PER_ADDRESS, _PER_ADDRESS_WINDOW)
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, email: str) -> None:
        """Send a reset link to the account with this address, if there is one."""
        now = self.clock()
        key = hashlib.blake2b(email.encode(), digest_size=16).hexdigest()
        if not self.per_address.hit(key, now).allowed:
            log.info("password reset requests for one address over the limit")
            return
        task = asyncio.create_task(self._send(email), name="password-reset")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, email: str) -> None:
        try:
            async with self.db.transaction() as conn:
                await forget_old_resets(conn, self.clock())
                issued = await issue_reset(conn, email, self.clock())
            if issued is None:
                log.info("password reset asked for an address no account has")
                return
            link = (
                f"{self.urls.base_url}/auth/password/edit"
                f"?reset_password_token={quote(issued.token)}"
            )
            await self.mailer.send(Mail(issued.account.email or email, *self._text(link)))
            log.info("password reset link sent", extra={"account": issued.account.username})
        except MailError as exc:
            log.warning("password reset link not sent", extra={"reason": str(exc)})
        except Exception:  # a background task: nobody else would hear of it
            log.exception("password reset failed")

    def _text(self, link: str) -> tuple[str, str]:
        minutes = int(RESET_LIFETIME.total_seconds() // 60)
        return (
            f"Reset your password on {self.name}",
            f"Someone (hopefully you) asked to reset the password of your account on "
            f"{self.urls.domain}.\n\nTo choose a new one, open this link within {minutes} "
            f"minutes:\n\n{link}\n\nIt works once. If you did not ask, ignore this message: "
            f"your password stays as it is.\n",
        )

    async def close(self) -> None:
        """Let the resets under way finish (each is bounded by the mail server's timeout)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.mailer.config.timeout_seconds + 5)


RESETS = web.AppKey("password_resets", ResetRequests)


def install(app: web.Application) -> None:
    """Give the app its reset worker, drained when the app stops."""
    config = app[CONFIG]
    app[RESETS] = ResetRequests(
        app[DATABASE],
        Mailer(config.smtp, config.domain),
        app[URLS],
        app[CLOCK],
        config.instance.name,
    )

    async def run(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[RESETS].close()

    app.cleanup_ctx.append(run)


def _email(value: str | None) -> str | None:
    """A plausible address in lower case, or None."""
    address = normalize_email(value or "")
    if not address or len(address) > EMAIL_LENGTH_MAX or "@" not in address:
        return None
    return address


def _ask(request: web.Request, email: str) -> None:
    count_attempt(request, "password-reset")
    request.app[RESETS].submit(email)


@routes.post("/api/kith/v1/password_reset")
async def request_reset(request: web.Request) -> web.Response:
    """Ask for a reset link for `email`: 202 whether or not an account has it."""
    if not request.app[RESETS].mailer.enabled:
        raise ApiError(403, NO_MAIL, NO_MAIL_HINT)
    params = await request_params(request)
    email = _email(string(params, "email", "", _TEXT_MAX))
    if email is None:
        return invalid([FieldError("email", "ERR_INVALID", "is invalid")])
    _ask(request, email)
    return json_body({}, status=202)


def _password_errors(password: str, confirmation: str | None) -> list[FieldError]:
    errors = password_errors(password)
    if not errors and confirmation is not None and confirmation != password:
        errors.append(
            FieldError("password_confirmation", "ERR_CONFIRMATION", "doesn't match Password")
        )
    return errors


async def _set_password(request: web.Request, token: str, password: str) -> bool:
    """Use the token to set the password; False when the token is no good."""
    password_hash = await asyncio.to_thread(hash_password, password)
    async with request.app[DATABASE].transaction() as conn:
        account = await use_reset(conn, token, password_hash, request.app[CLOCK]())
    if account is not None:
        log.info("password reset used", extra={"account": account.username})
    return account is not None


@routes.post("/api/kith/v1/password_reset/confirm")
async def confirm_reset(request: web.Request) -> web.Response:
    """Set a new `password` with the emailed `token` (once, within the hour)."""
    params = await request_params(request)
    token = string(params, "token", "", _TEXT_MAX) or ""
    password = string(params, "password", "", _TEXT_MAX) or ""
    errors = _password_errors(password, string(params, "password_confirmation", None, _TEXT_MAX))
    if not token or len(token) > TOKEN_LENGTH_MAX:
        errors.insert(0, FieldError("token", "ERR_INVALID", "is invalid"))
    if errors:
        return invalid(errors)
    if not await _set_password(request, token, password):
        return invalid([FieldError("token", "ERR_INVALID", "is invalid, used or expired")])
    return json_body({})


# --- the pages ---------------------------------------------------------------------------


def _page(
    request: web.Request, template: str, status: int = 200, **context: object
) -> web.Response:
    response = render_page(request, template, http_status=status, **context)
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get("/auth/password/new")
async def request_page(request: web.Request) -> web.Response:
    """The form that asks for a reset link."""
    enabled = request.app[RESETS].mailer.enabled
    return _page(request, "password_new.html", mail_enabled=enabled, sent=False, error=None)


@routes.post("/auth/password")
async def request_form(request: web.Request) -> web.Response:
    """The form's answer: the same page whether or not an account has the address."""
    if not request.app[RESETS].mailer.enabled:
        return _page(request, "password_new.html", mail_enabled=False, sent=False, error=None)
    params = await request_params(request)
    email = _email(string(params, "email", "", _TEXT_MAX))
    if email is None:
        return _page(
            request,
            "password_new.html",
            422,
            mail_enabled=True,
            sent=False,
            error="That is not an email address.",
        )
    _ask(request, email)
    return _page(request, "password_new.html", mail_enabled=True, sent=True, error=None)


async def _usable(request: web.Request, token: str) -> bool:
    async with request.app[DATABASE].read() as conn:
        return await reset_is_usable(conn, token, request.app[CLOCK]())


def _edit_page(
    request: web.Request, token: str, status: int = 200, **state: object
) -> web.Response:
    context: dict[str, object] = {"done": False, "usable": True, "error": None}
    return _page(
        request,
        "password_edit.html",
        status,
        token=token,
        minimum=PASSWORD_LENGTH_MIN,
        **{**context, **state},
    )


@routes.get("/auth/password/edit")
async def edit_page(request: web.Request) -> web.Response:
    """The page the emailed link opens: a form for the new password, if the link still works."""
    token = request.query.get("reset_password_token", "")
    if not await _usable(request, token):
        return _edit_page(request, "", 410, usable=False)
    return _edit_page(request, token)


@routes.post("/auth/password/edit")
async def edit_form(request: web.Request) -> web.Response:
    """Set the new password from the form."""
    params = await request_params(request)
    token = string(params, "reset_password_token", "", _TEXT_MAX) or ""
    password = string(params, "password", "", _TEXT_MAX) or ""
    confirmation = string(params, "password_confirmation", "", _TEXT_MAX) or ""
    if not await _usable(request, token):
        return _edit_page(request, "", 410, usable=False)
    errors = _password_errors(password, confirmation)
    if errors:
        message = f"{errors[0].field.replace('_', ' ').capitalize()} {errors[0].description}."
        return _edit_page(request, token, 422, error=message)
    if not await _set_password(request, token, password):
        return _edit_page(request, "", 410, usable=False)
    return _edit_page(request, "", done=True)
