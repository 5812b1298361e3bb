"""Signing up from an app: Mastodon's POST /api/v1/accounts (server/identity/registration.py).

The app authenticates with its own token (client_credentials, `write:accounts`); the answer
is a Token entity for the new user, with the app's scopes. Problems with the input are 422
with Mastodon's `details` (every field's errors at once); a closed server, or an invite-only
one asked without a code, answers 403. Attempts are limited per address.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from aiohttp import web

from server.api.auth import require_grant
from server.api.errors import ApiError
from server.api.oauth import render_token
from server.api.params import boolean, request_params, string
from server.api.ratelimit import API_LIMITS, RateLimiter, client_address
from server.api.responses import json_body
from server.appkeys import CLOCK, CONFIG, DATABASE
from server.config import Config
from server.identity.keys import generate_actor_keys
from server.identity.oauth import application_by_id
from server.identity.passwords import hash_password
from server.identity.registration import (
    FieldError,
    Policy,
    SignUp,
    SignUpInvalid,
    check_fields,
    check_taken,
    create_sign_up,
    refusal,
)
from server.identity.tokens import Grant, issue_token

log = logging.getLogger("kith.registration")
routes = web.RouteTableDef()
# Sign-up attempts and password reset requests, per client address (Mastodon: 25 / 5 min).
SIGN_UP_LIMITER = web.AppKey("sign_up_limiter", RateLimiter)
NOT_ALLOWED = "This action is not allowed"  # Mastodon's words for a forbidden action
_TEXT_MAX = 2000  # longer than any field may be: beyond it, a plain 422 without details


def install(app: web.Application, config: Config) -> None:
    """Give the app its per-address limiter for sign-ups and reset requests."""
    app[SIGN_UP_LIMITER] = RateLimiter(
        config.api.sign_up_attempts_per_window,
        timedelta(seconds=config.api.rate_limit_window_seconds),
    )


def count_attempt(request: web.Request, kind: str) -> None:
    """Count one sign-up or reset attempt from the client's address; 429 over the limit."""
    now = request.app[CLOCK]()
    address = client_address(request, request.app[API_LIMITS].trusted_proxies)
    verdict = request.app[SIGN_UP_LIMITER].hit(f"{kind}:{address}", now)
    if not verdict.allowed:
        wait = max(1, int((verdict.reset_at - now).total_seconds()))
        raise ApiError(429, "Too many requests", headers={"Retry-After": str(wait)})


def invalid(errors: list[FieldError]) -> web.Response:
    """422 in the shape of Mastodon's ValidationErrorFormatter."""
    details: dict[str, list[dict[str, str]]] = {}
    for error in errors:
        details.setdefault(error.field, []).append(
            {"error": error.error, "description": error.description}
        )
    return json_body({"error": str(SignUpInvalid(errors)), "details": details}, status=422)


def _sign_up(request: web.Request, params: dict[str, Any], grant: Grant) -> SignUp:
    return SignUp(
        username=(string(params, "username", "", _TEXT_MAX) or "").strip(),
        password=string(params, "password", "", _TEXT_MAX) or "",
        email=string(params, "email", None, _TEXT_MAX),
        agreement=boolean(params, "agreement"),
        locale=(string(params, "locale", None, 100) or "").strip() or None,
        reason=string(params, "reason", None, _TEXT_MAX),
        invite_code=(string(params, "invite_code", None, 100) or "").strip() or None,
        ip=client_address(request, request.app[API_LIMITS].trusted_proxies) or None,
        application_id=grant.application_id,
    )


@routes.post("/api/v1/accounts")
async def register(request: web.Request) -> web.Response:
    """Create an account (pending in approval mode) and answer a token for it."""
    grant = await require_grant(request, "write:accounts")
    if grant.account is not None or grant.application_id is None:
        raise ApiError(403, "This method requires an client credentials authentication")
    count_attempt(request, "sign-up")
    policy = Policy.of(request.app[CONFIG].instance)
    params = await request_params(request)
    sign_up = _sign_up(request, params, grant)
    refused = refusal(policy, sign_up)
    if refused:
        raise ApiError(403, NOT_ALLOWED, refused)
    errors = check_fields(sign_up, policy)
    db = request.app[DATABASE]
    async with db.read() as conn:
        errors += await check_taken(conn, sign_up)
        application = await application_by_id(conn, grant.application_id)
    if errors:
        return invalid(errors)
    if application is None:
        raise ApiError(401, "The access token is invalid")
    # Both cost tens of milliseconds of CPU: off the event loop, before the transaction.
    keys, password_hash = await asyncio.gather(
        asyncio.to_thread(generate_actor_keys),
        asyncio.to_thread(hash_password, sign_up.password),
    )
    now = request.app[CLOCK]()
    try:
        async with db.transaction() as conn:
            account, invite = await create_sign_up(conn, sign_up, policy, keys, password_hash, now)
            issued = await issue_token(
                conn,
                account.id,
                application.scopes,
                application.name,
                now,
                application_id=application.id,
                with_refresh=True,
            )
    except SignUpInvalid as exc:
        return invalid(exc.errors)
    log.info(
        "signed up",
        extra={
            "account": account.username,
            "pending": account.is_pending,
            "invite": invite.id if invite else None,
        },
    )
    return json_body(render_token(issued), headers={"Cache-Control": "no-store"})
