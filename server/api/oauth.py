"""OAuth endpoints: app registration, the consent page, the token endpoint, revocation."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from federation.fetch import FetchError
from protocol.as2 import ids_of
from server.api.auth import PENDING, SUSPENDED, require_grant
from server.api.errors import ApiError
from server.api.params import request_params, string
from server.api.ratelimit import API_LIMITS, RateLimiter, client_address
from server.api.responses import json_body
from server.api.web import CONTENT_SECURITY_POLICY, render_page
from server.appkeys import CLOCK, CONFIG, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, find_account, password_hash_of
from server.identity.oauth import (
    OOB_REDIRECT,
    Application,
    OAuthError,
    application_by_client_id,
    application_by_id,
    authenticate_client,
    checked_redirect_uris,
    checked_scopes,
    is_url_client_id,
    issue_code,
    redeem_code,
    refresh,
    register_application,
    url_client,
    url_client_allows,
)
from server.identity.passwords import verify_password
from server.identity.tokens import KNOWN_SCOPES, IssuedToken, issue_token, revoke_token
from server.web.sessions import WEB_CLIENT_ID

routes = web.RouteTableDef()
_CSRF_COOKIE = "kith_csrf"
LOGIN_LIMITER = web.AppKey("login_limiter", RateLimiter)
_CLIENT_FETCH_S = 5.0
_CLIENT_NAME_MAX = 100


def login_limiter(attempts: int) -> RateLimiter:
    """Failed sign-ins allowed per address and per account in a five-minute window."""
    return RateLimiter(attempts, timedelta(minutes=5))


def _oauth_error(exc: OAuthError) -> web.Response:
    return json_body({"error": exc.error, "error_description": exc.description}, status=exc.status)


@routes.post("/api/v1/apps")
async def create_app(request: web.Request) -> web.Response:
    """Register a client application (Mastodon's shape, secret included once)."""
    params = await request_params(request)
    try:
        redirect_uris = checked_redirect_uris(params.get("redirect_uris"))
        scopes = checked_scopes(string(params, "scopes", max_length=1024))
        name = string(params, "client_name", "", max_length=255) or ""
        async with request.app[DATABASE].transaction() as conn:
            application, secret = await register_application(
                conn, name, redirect_uris, scopes, string(params, "website"), request.app[CLOCK]()
            )
    except OAuthError as exc:
        raise ApiError(422, exc.description) from None
    return json_body(
        {**render_application(application), "client_secret": secret, "client_secret_expires_at": 0}
    )


def render_application(application: Application) -> dict:
    return {
        "id": str(application.id),
        "name": application.name,
        "website": application.website,
        "scopes": list(application.scopes),
        "redirect_uri": "\n".join(application.redirect_uris),
        "redirect_uris": list(application.redirect_uris),
        "client_id": application.client_id,
        "vapid_key": "",
    }


@routes.get("/api/v1/apps/verify_credentials")
async def verify_app(request: web.Request) -> web.Response:
    """The application behind the token."""
    grant = await require_grant(request, "read", "write", "follow", "push", "profile")
    async with request.app[DATABASE].read() as conn:
        application = (
            await application_by_id(conn, grant.application_id) if grant.application_id else None
        )
    if application is None:
        raise ApiError(404, "this token belongs to no application")
    entity = render_application(application)
    return json_body({k: entity[k] for k in ("id", "name", "website", "scopes", "vapid_key")})


async def _authorize_request(
    request: web.Request, params: dict
) -> tuple[Application, str, tuple[str, ...]]:
    """The client, redirect URI and scopes of an authorization request, all checked."""
    if string(params, "response_type", "code") != "code":
        raise ApiError(400, "unsupported_response_type", "only response_type=code is supported")
    client_id = string(params, "client_id", "", max_length=2048) or ""
    if is_url_client_id(client_id):
        return await _url_client_request(request, params, client_id)
    async with request.app[DATABASE].read() as conn:
        application = await application_by_client_id(conn, client_id)
    if application is None:
        raise ApiError(400, "invalid_client", "no application has this client_id")
    redirect_uri = string(params, "redirect_uri", application.redirect_uris[0]) or ""
    if redirect_uri not in application.redirect_uris:
        raise ApiError(400, "invalid_request", "redirect_uri is not registered for this app")
    try:
        scopes = checked_scopes(string(params, "scope", max_length=1024), application.scopes)
    except OAuthError as exc:
        raise ApiError(400, exc.error, exc.description) from None
    return application, redirect_uri, scopes


async def _url_client_request(
    request: web.Request, params: dict, client_id: str
) -> tuple[Application, str, tuple[str, ...]]:
    """An ActivityPub C2S client named by its URL (`activitypub_object_id_as_client_id`),
    held to PKCE. Its document, when it can be fetched, gives its name and the redirect URIs it
    allows; offline, it is accepted as it is, redirected only to its own origin (or oob)."""
    redirect_uri = string(params, "redirect_uri", max_length=2048) or ""
    name, redirect_uris = await _client_document(request, client_id)
    if redirect_uri not in redirect_uris and not url_client_allows(client_id, redirect_uri):
        raise ApiError(400, "invalid_request", "redirect_uri must be on the client's own origin")
    if not string(params, "code_challenge"):
        raise ApiError(400, "invalid_request", "a client named by a URL must use PKCE")
    async with request.app[DATABASE].transaction() as conn:
        application = await url_client(conn, client_id, request.app[CLOCK]())
    if name:
        application = dataclasses.replace(application, name=name)
    try:
        scopes = checked_scopes(string(params, "scope", max_length=1024), application.scopes)
    except OAuthError as exc:
        raise ApiError(400, exc.error, exc.description) from None
    return application, redirect_uri, scopes


async def _client_document(request: web.Request, client_id: str) -> tuple[str, tuple[str, ...]]:
    """The name and redirect URIs a client's own AS2 document (an `Application`) declares;
    nothing when it cannot be fetched in a few seconds (a client offline or on a LAN)."""
    try:
        async with asyncio.timeout(_CLIENT_FETCH_S):
            fetched = await request.app[FEDERATION].fetcher.get_object(client_id)
    except (FetchError, TimeoutError):
        return "", ()
    document = fetched.document
    name = document.get("name")
    declared = [
        uri for key in ("redirectURI", "redirect_uris") for uri in ids_of(document.get(key))
    ]
    try:
        uris = checked_redirect_uris(declared) if declared else ()
    except OAuthError:
        uris = ()  # a document that declares a bad URI vouches for none of them
    return (name.strip()[:_CLIENT_NAME_MAX] if isinstance(name, str) else ""), uris


@routes.get("/oauth/authorize")
async def authorize_page(request: web.Request) -> web.Response:
    """The sign-in and consent page."""
    params = await request_params(request)
    application, redirect_uri, scopes = await _authorize_request(request, params)
    return _consent_page(request, params, application, redirect_uri, scopes)


def _consent_page(
    request: web.Request,
    params: dict,
    application: Application,
    redirect_uri: str,
    scopes: tuple[str, ...],
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    token = request.cookies.get(_CSRF_COOKIE) or secrets.token_urlsafe(24)
    hidden = {
        # A URL-named client is known by its URL (the row's own key is internal).
        "client_id": application.website
        if application.is_url_client and application.website
        else application.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": string(params, "state", "") or "",
        "code_challenge": string(params, "code_challenge", "") or "",
        "code_challenge_method": string(params, "code_challenge_method", "") or "",
        "csrf_token": token,
    }
    response = render_page(
        request,
        "authorize.html",
        http_status=status,
        application=application,
        scopes=scopes,
        hidden=hidden,
        error=error,
        # The node's own web client: a plain sign-in page, no consent to give to ourselves.
        first_party=application.client_id == WEB_CLIENT_ID,
        username=string(params, "username", "", max_length=100) or "",
        sign_up_open=request.app[CONFIG].instance.registrations != "closed",
    )
    response.headers["Content-Security-Policy"] = _consent_csp(redirect_uri)
    secure = request.app[URLS].base_url.startswith("https://")
    response.set_cookie(
        _CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/oauth"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _consent_csp(redirect_uri: str) -> str:
    """Browsers apply form-action to the redirect after the POST: allow the app's target."""
    parts = urlsplit(redirect_uri)
    if redirect_uri == OOB_REDIRECT:
        target = ""
    elif parts.scheme in ("http", "https"):
        target = f" {parts.scheme}://{parts.netloc}"
    else:
        target = f" {parts.scheme}:"
    return CONTENT_SECURITY_POLICY.replace("form-action 'self'", f"form-action 'self'{target}")


@routes.post("/oauth/authorize")
async def authorize(request: web.Request) -> web.Response:
    """Sign in and approve (or deny): redirect back with a code, or show it (out of band)."""
    params = await request_params(request)
    application, redirect_uri, scopes = await _authorize_request(request, params)
    cookie, field = request.cookies.get(_CSRF_COOKIE, ""), string(params, "csrf_token", "") or ""
    if not cookie or not hmac.compare_digest(cookie, field):
        raise ApiError(403, "forbidden", "the form has expired; open the sign-in page again")
    state = string(params, "state", "") or None
    if string(params, "decision") != "approve":
        return _redirect(redirect_uri, {"error": "access_denied", "state": state})
    try:
        account = await _sign_in(
            request, string(params, "username", "") or "", string(params, "password", "") or ""
        )
    except ApiError as exc:  # too many attempts, a suspended or pending account: said inline
        message = exc.error + (f": {exc.description}." if exc.description else ".")
        return _consent_page(
            request, params, application, redirect_uri, scopes, message, exc.status
        )
    if account is None:
        return _consent_page(
            request, params, application, redirect_uri, scopes, "Wrong username or password.", 401
        )
    async with request.app[DATABASE].transaction() as conn:
        try:
            code = await issue_code(
                conn,
                application,
                account.id,
                redirect_uri,
                scopes,
                string(params, "code_challenge") or None,
                string(params, "code_challenge_method") or None,
                request.app[CLOCK](),
            )
        except OAuthError as exc:
            raise ApiError(400, exc.error, exc.description) from None
    if redirect_uri == OOB_REDIRECT:
        return render_page(request, "authorization_code.html", code=code, application=application)
    return _redirect(redirect_uri, {"code": code, "state": state})


def _redirect(redirect_uri: str, values: dict[str, str | None]) -> web.Response:
    parts = urlsplit(redirect_uri)
    extra = urlencode({k: v for k, v in values.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    raise web.HTTPFound(urlunsplit(parts._replace(query=query)))


async def _sign_in(request: web.Request, username: str, password: str) -> Account | None:
    """The account if the password is right; failures are rate limited per address and name."""
    limiter = request.app[LOGIN_LIMITER]
    now = request.app[CLOCK]()
    name = username.strip().lstrip("@").split("@", 1)[0].lower()
    address = client_address(request, request.app[API_LIMITS].trusted_proxies)
    keys = (f"ip:{address}", f"user:{name}")
    if any(limiter.peek(key, now) for key in keys):
        raise ApiError(429, "Too many failed sign-in attempts", headers={"Retry-After": "300"})
    async with request.app[DATABASE].read() as conn:
        account = await find_account(conn, name) if name else None
        stored = await password_hash_of(conn, account.id) if account else None
    if account is None or account.is_deleted:
        await asyncio.to_thread(verify_password, password, None)  # same cost either way
        ok = False
    else:
        ok = await asyncio.to_thread(verify_password, password, stored)
    if not ok:
        for key in keys:
            limiter.hit(key, now)
        return None
    if account.is_suspended:  # the right password, so the reason may be told (Mastodon does)
        raise ApiError(403, SUSPENDED, "the account is suspended by the operators")
    if account.is_pending:
        raise ApiError(403, PENDING, "an administrator has not approved the sign-up yet")
    return account


def _client_credentials(request: web.Request, params: dict) -> tuple[str | None, str | None]:
    """client_id/secret from the body, or from HTTP Basic authentication."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(401, "invalid_client", "malformed Basic credentials") from None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return string(params, "client_id"), string(params, "client_secret")


@routes.post("/oauth/token")
async def token(request: web.Request) -> web.Response:
    """The token endpoint: authorization_code, password, client_credentials, refresh_token."""
    params = await request_params(request)
    try:
        issued = await _grant(request, params)
    except OAuthError as exc:
        return _oauth_error(exc)
    return json_body(
        render_token(issued), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def render_token(issued: IssuedToken) -> dict:
    """Mastodon's Token entity (the token endpoint's answer, and a sign-up's)."""
    body: dict = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "scope": " ".join(issued.scopes),
        "created_at": int(issued.created_at.timestamp()),
    }
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    return body


async def _grant(request: web.Request, params: dict) -> IssuedToken:
    db, now = request.app[DATABASE], request.app[CLOCK]()
    grant_type = string(params, "grant_type", "") or ""
    client_id, client_secret = _client_credentials(request, params)
    async with db.transaction() as conn:
        application = await authenticate_client(conn, client_id, client_secret)
        if grant_type == "authorization_code":
            return await redeem_code(
                conn,
                application,
                string(params, "code", "") or "",
                string(params, "redirect_uri"),
                string(params, "code_verifier"),
                now,
            )
        if grant_type == "refresh_token":
            return await refresh(conn, application, string(params, "refresh_token", "") or "", now)
        if grant_type == "client_credentials":
            scopes = checked_scopes(string(params, "scope", max_length=1024), application.scopes)
            return await issue_token(
                conn, None, scopes, application.name, now, application_id=application.id
            )
    if grant_type == "password":
        return await _password_grant(request, params, application)
    raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")


async def _password_grant(
    request: web.Request, params: dict, application: Application
) -> IssuedToken:
    if not request.app[CONFIG].api.password_grant:
        raise OAuthError("unsupported_grant_type", "this server does not take passwords from apps")
    scopes = checked_scopes(string(params, "scope", max_length=1024), application.scopes)
    account = await _sign_in(
        request, string(params, "username", "") or "", string(params, "password", "") or ""
    )
    if account is None:
        raise OAuthError("invalid_grant", "wrong username or password")
    async with request.app[DATABASE].transaction() as conn:
        return await issue_token(
            conn,
            account.id,
            scopes,
            application.name,
            request.app[CLOCK](),
            application_id=application.id,
            with_refresh=True,
        )


@routes.post("/oauth/revoke")
async def revoke(request: web.Request) -> web.Response:
    """RFC 7009: revoke an access or refresh token of this client; always 200."""
    params = await request_params(request)
    client_id, client_secret = _client_credentials(request, params)
    async with request.app[DATABASE].transaction() as conn:
        try:
            await authenticate_client(conn, client_id, client_secret)
        except OAuthError as exc:
            return _oauth_error(exc)
        await revoke_token(conn, string(params, "token", "") or "", request.app[CLOCK]())
    return json_body({})


@routes.get("/.well-known/oauth-authorization-server")
async def metadata(request: web.Request) -> web.Response:
    """RFC 8414 authorization server metadata."""
    base = request.app[URLS].base_url
    grants = ["authorization_code", "client_credentials", "refresh_token"]
    if request.app[CONFIG].api.password_grant:
        grants.append("password")
    return json_body(
        {
            "issuer": f"{base}/",
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "app_registration_endpoint": f"{base}/api/v1/apps",
            "scopes_supported": sorted(KNOWN_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grants,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256", "plain"],
            # C2S clients may name themselves by their URL instead of registering.
            "activitypub_object_id_as_client_id": True,
            "service_documentation": "https://docs.joinmastodon.org/api/",
        }
    )
