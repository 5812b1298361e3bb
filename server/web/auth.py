"""Signing in (the node's own OAuth flow), signing out, and signing up from the browser."""

from __future__ import annotations

import asyncio
import logging
import secrets
from urllib.parse import urlencode

from aiohttp import web

from server.api.errors import ApiError
from server.api.mastodon.registrations import count_attempt
from server.api.ratelimit import API_LIMITS, client_address
from server.appkeys import CLOCK, CONFIG, DATABASE, URLS
from server.identity.keys import generate_actor_keys
from server.identity.oauth import OAuthError, redeem_code
from server.identity.passwords import PASSWORD_LENGTH_MIN, hash_password
from server.identity.registration import (
    CLOSED,
    INVITE,
    Policy,
    SignUp,
    SignUpInvalid,
    check_fields,
    check_taken,
    create_sign_up,
)
from server.identity.tokens import issue_token
from server.web.pages import (
    FormErrors,
    local_path,
    page,
    read_form,
    render,
    see_other,
    text_field,
)
from server.web.sessions import (
    CALLBACK_PATH,
    SESSION_LIFETIME,
    SIGN_IN_LIFETIME,
    close_session,
    cookies,
    open_session,
    pkce_pair,
    web_client,
)

log = logging.getLogger("kith.web")
routes = web.RouteTableDef()
_FIELD_MAX = 2000


@routes.get("/auth/sign_in")
@page
async def sign_in(request: web.Request) -> web.StreamResponse:
    """Start the authorization-code flow (PKCE) of the node's own web client."""
    urls, now = request.app[URLS], request.app[CLOCK]()
    async with request.app[DATABASE].transaction() as conn:
        client = await web_client(conn, urls, now)
    state = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    target = local_path(request.query.get("next"))
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": urls.base_url + CALLBACK_PATH,
            "scope": " ".join(client.scopes),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    response = see_other(f"/oauth/authorize?{query}")
    names = cookies(request)
    names.set(
        response,
        names.sign_in,
        f"{state}.{verifier}.{target}",
        int(SIGN_IN_LIFETIME.total_seconds()),
    )
    return response


@routes.get(CALLBACK_PATH)
@page
async def callback(request: web.Request) -> web.StreamResponse:
    """The code comes back: redeem it in-process, keep the token's row, open a session."""
    names = cookies(request)
    state, _, rest = request.cookies.get(names.sign_in, "").partition(".")
    verifier, _, target = rest.partition(".")
    if request.query.get("error") == "access_denied":
        return see_other("/")
    if not state or not secrets.compare_digest(state, request.query.get("state", "")):
        raise ApiError(400, "This sign-in has expired", "Sign in again.")
    urls, now = request.app[URLS], request.app[CLOCK]()
    try:
        async with request.app[DATABASE].transaction() as conn:
            client = await web_client(conn, urls, now)
            issued = await redeem_code(
                conn,
                client,
                request.query.get("code", ""),
                urls.base_url + CALLBACK_PATH,
                verifier,
                now,
            )
            session_id = await open_session(conn, issued.access_token, now)
    except OAuthError:
        raise ApiError(400, "This sign-in has expired", "Sign in again.") from None
    response = see_other(local_path(target))
    names.set(response, names.session, session_id, int(SESSION_LIFETIME.total_seconds()))
    names.clear(response, names.sign_in)
    return response


@routes.post("/auth/sign_out")
@page
async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session and revoke its token."""
    await read_form(request)
    names = cookies(request)
    session_id = request.cookies.get(names.session, "")
    if session_id:
        async with request.app[DATABASE].transaction() as conn:
            await close_session(conn, session_id, request.app[CLOCK]())
    response = see_other("/")
    names.clear(response, names.session)
    return response


# --- signing up -----------------------------------------------------------------------------


@routes.get("/auth/sign_up")
@page
async def sign_up_page(request: web.Request) -> web.Response:
    return await _sign_up_form(request, FormErrors(), {})


async def _sign_up_form(
    request: web.Request, errors: FormErrors, values: dict[str, str], status: int = 200
) -> web.Response:
    policy = Policy.of(request.app[CONFIG].instance)
    return await render(
        request,
        "web/sign_up.html",
        status,
        policy=policy,
        open=policy.mode != CLOSED,
        errors=errors,
        values=values,
        password_min=PASSWORD_LENGTH_MIN,
        message=request.app[CONFIG].instance.registrations_message,
    )


@routes.post("/auth/sign_up")
@page
async def sign_up(request: web.Request) -> web.Response:
    """Create the account as the API would (same rules and messages), then sign in."""
    form = await read_form(request)
    policy = Policy.of(request.app[CONFIG].instance)
    if policy.mode == CLOSED:
        raise ApiError(403, "Sign-ups are closed", "This server is not taking new accounts.")
    count_attempt(request, "sign-up")
    values = {
        name: text_field(form, name, _FIELD_MAX)
        for name in ("username", "email", "reason", "invite_code")
    }
    password = text_field(form, "password", _FIELD_MAX)
    errors = FormErrors()
    if password != text_field(form, "password_confirmation", _FIELD_MAX):
        errors["password_confirmation"] = "The two passwords differ."  # noqa: S105
    application_id = await _client_id(request)
    sign_up = SignUp(
        username=values["username"].strip(),
        password=password,
        email=values["email"].strip() or None,
        agreement=form.get("agreement") == "1",
        locale=None,
        reason=values["reason"] or None,
        invite_code=values["invite_code"].strip() or None,
        ip=client_address(request, request.app[API_LIMITS].trusted_proxies) or None,
        application_id=application_id,
    )
    if policy.mode == INVITE and not sign_up.invite_code:
        errors["invite_code"] = "This server takes new accounts only with an invite code."
    found = check_fields(sign_up, policy)
    async with request.app[DATABASE].read() as conn:
        found += await check_taken(conn, sign_up)
    errors.update(_messages(found))
    if errors:
        return await _sign_up_form(request, errors, values, 422)
    keys, password_hash = await asyncio.gather(
        asyncio.to_thread(generate_actor_keys), asyncio.to_thread(hash_password, password)
    )
    return await _create(request, sign_up, policy, keys, password_hash, values)


async def _client_id(request: web.Request) -> int:
    async with request.app[DATABASE].transaction() as conn:
        client = await web_client(conn, request.app[URLS], request.app[CLOCK]())
    return client.id


def _messages(found: list) -> FormErrors:
    errors = FormErrors()
    for error in found:
        field = error.field.replace("_", " ").capitalize()
        if error.field == "agreement":
            text = "You must accept the rules."
        elif error.description.startswith(("is ", "must ", "can't ", "has ")):
            text = f"{field} {error.description}."
        else:
            text = error.description[:1].upper() + error.description[1:] + "."
        errors.setdefault(error.field, text)
    return errors


async def _create(
    request: web.Request,
    sign_up: SignUp,
    policy: Policy,
    keys: object,
    password_hash: str,
    values: dict[str, str],
) -> web.Response:
    now = request.app[CLOCK]()
    try:
        async with request.app[DATABASE].transaction() as conn:
            account, _ = await create_sign_up(
                conn,
                sign_up,
                policy,
                keys,  # type: ignore[arg-type]
                password_hash,
                now,
            )
            session_id = None
            if not account.is_pending:
                # Signed up, so signed in: a token of the web client, as the code flow gives.
                client = await web_client(conn, request.app[URLS], now)
                issued = await issue_token(
                    conn, account.id, client.scopes, client.name, now, application_id=client.id
                )
                session_id = await open_session(conn, issued.access_token, now)
    except SignUpInvalid as exc:
        return await _sign_up_form(request, _messages(exc.errors), values, 422)
    log.info("signed up on the web", extra={"account": account.username})
    if session_id is None:
        return await render(request, "web/sign_up_pending.html", 200, username=account.username)
    response = see_other("/")
    names = cookies(request)
    names.set(response, names.session, session_id, int(SESSION_LIFETIME.total_seconds()))
    return response
