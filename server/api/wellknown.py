"""Discovery: WebFinger, host-meta and NodeInfo."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from protocol import nodeinfo
from protocol.errors import InvalidResource
from protocol.vocab import JRD_MEDIA_TYPE, XRD_MEDIA_TYPE
from protocol.webfinger import (
    AcctResource,
    UrlResource,
    normalize_host,
    parse_resource,
    render_host_meta_json,
    render_host_meta_xrd,
    render_jrd,
)
from server import __version__
from server.api.errors import ApiError
from server.api.negotiation import negotiate
from server.api.responses import json_body, json_document
from server.appkeys import CLOCK, CONFIG, DATABASE, URLS
from server.identity.accounts import Account, count_users, find_account, instance_actor
from server.identity.registration import Policy
from server.social.collections import count_local_posts
from server.urls import INSTANCE_ACTOR_PATH, Urls

routes = web.RouteTableDef()
_ACTOR_PATH_PREFIXES = ("/users/", "/@")


@routes.get("/.well-known/webfinger")
async def webfinger(request: web.Request) -> web.Response:
    """RFC 7033: 400 for a malformed resource, 404 for no such account, 410 for a deleted one."""
    urls = request.app[URLS]
    try:
        resource = parse_resource(request.query.get("resource"))
    except InvalidResource as exc:
        raise ApiError(400, "invalid resource", str(exc)) from None
    username = _local_username(resource, urls)
    async with request.app[DATABASE].read() as conn:
        if username is None:
            account = await instance_actor(conn)
        else:
            account = await find_account(conn, username)
    if account is None or account.is_pending:  # a sign-up not yet approved is nobody yet
        raise ApiError(404, "not found", "no such account on this server")
    if account.is_deleted:
        raise ApiError(410, "gone", "this account has been deleted")
    return _jrd_response(account, urls, frozenset(request.query.getall("rel", [])) or None)


def _local_username(resource: AcctResource | UrlResource, urls: Urls) -> str | None:
    """The username the resource names on this node (None: the instance actor), else 404."""
    local_hosts = {urls.domain, normalize_host(urls.authority)}
    if resource.host not in local_hosts:
        raise ApiError(404, "not found", "the resource is not on this server")
    if isinstance(resource, AcctResource):
        return None if resource.username.lower() == urls.domain else resource.username
    if resource.path.rstrip("/") == INSTANCE_ACTOR_PATH:
        return None
    for prefix in _ACTOR_PATH_PREFIXES:
        if resource.path.startswith(prefix):
            name = resource.path[len(prefix) :].rstrip("/")
            if name and "/" not in name:
                return name
    raise ApiError(404, "not found", "the resource is not an account on this server")


def _jrd_response(account: Account, urls: Urls, rels: frozenset[str] | None) -> web.Response:
    jrd = render_jrd(
        subject=f"acct:{urls.handle(account)}",
        actor_id=urls.actor(account),
        profile_url=urls.profile(account),
        rels=rels,
    )
    return json_document(jrd, JRD_MEDIA_TYPE, headers={"Cache-Control": "max-age=300, public"})


@routes.get("/.well-known/host-meta")
async def host_meta(request: web.Request) -> web.Response:
    """XRD by default; JSON when asked with ?format=json or Accept: application/json."""
    template = request.app[URLS].webfinger_template
    wants_json = request.query.get("format") == "json" or (
        negotiate(request.headers.get("Accept"), [XRD_MEDIA_TYPE, "application/json"])
        == "application/json"
    )
    if wants_json:
        return json_body(render_host_meta_json(template))
    return web.Response(text=render_host_meta_xrd(template), content_type=XRD_MEDIA_TYPE)


@routes.get("/.well-known/host-meta.json")
async def host_meta_json(request: web.Request) -> web.Response:
    """The JSON form of host-meta at its own path."""
    return json_body(render_host_meta_json(request.app[URLS].webfinger_template))


@routes.get("/.well-known/nodeinfo")
async def nodeinfo_discovery(request: web.Request) -> web.Response:
    """FEP-f1d5: where the NodeInfo documents are."""
    return json_body(nodeinfo.render_discovery(request.app[URLS].nodeinfo_template))


@routes.get("/nodeinfo/{version}")
async def nodeinfo_document(request: web.Request) -> web.Response:
    """NodeInfo 2.0 or 2.1 with live counts."""
    version = request.match_info["version"]
    if version not in nodeinfo.VERSIONS:
        raise ApiError(
            404, "not found", f"NodeInfo versions served: {', '.join(nodeinfo.VERSIONS)}"
        )
    config = request.app[CONFIG]
    now = request.app[CLOCK]()
    async with request.app[DATABASE].read() as conn:
        total = await count_users(conn)
        month = await count_users(conn, active_since=now - timedelta(days=30))
        halfyear = await count_users(conn, active_since=now - timedelta(days=180))
        local_posts = await count_local_posts(conn)
    stats = nodeinfo.NodeStats(
        software_version=__version__,
        node_name=config.instance.name,
        node_description=config.instance.description,
        # As Mastodon: true while anyone may sign up, with approval or without.
        open_registrations=Policy.of(config.instance).enabled,
        users_total=total,
        users_active_month=month,
        users_active_halfyear=halfyear,
        local_posts=local_posts,
    )
    return json_document(nodeinfo.render_nodeinfo(version, stats), nodeinfo.media_type(version))
