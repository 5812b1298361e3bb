"""ActivityPub client-to-server: the owner's outbox (POST), inbox (GET) and proxyUrl."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from protocol.collections import render_ordered_collection, render_ordered_collection_page
from protocol.errors import ProtocolError
from protocol.jsonsafe import parse_json_document
from protocol.vocab import AS2_CONTEXT
from server.api.activitypub import as2_response
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.pagination import page_request
from server.api.params import request_params, string
from server.appkeys import CONFIG, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account
from server.social import c2s
from server.social.collections import as_activities
from server.social.graph import InvalidAction
from server.social.posting import InvalidPost
from server.social.remote_accounts import account_for_actor, upsert_remote_account
from server.social.statuses import Status, status_by_uri
from server.social.timelines import home_feed_size, home_timeline

log = logging.getLogger("kith.c2s")
routes = web.RouteTableDef()
_AS2_TYPES = ("application/activity+json", "application/ld+json")


async def _owner(request: web.Request, scope: str) -> Account:
    """The token's user, who must be the actor named in the path."""
    account = await require_account(request, scope)
    if account.username.lower() != request.match_info["username"].lower():
        raise ApiError(403, "This action is not allowed", "only the actor may use its own box")
    return account


@routes.post("/users/{username}/outbox")
async def post_to_outbox(request: web.Request) -> web.Response:
    """Perform an activity (or a bare Note, wrapped in Create); 201 with its id as Location."""
    account = await _owner(request, "write")
    if request.content_type not in _AS2_TYPES:
        raise ApiError(415, "unsupported media type", "send application/activity+json")
    limit = request.app[CONFIG].federation.inbox_body_bytes_max
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise ApiError(413, "payload too large")
    urls = request.app[URLS]
    try:
        activity = c2s.wrap(parse_json_document(body), urls.actor(account))
        resolved = await _resolve(request, activity)
        published = await request.app[FEDERATION].perform(
            lambda conn, now: c2s.perform(conn, urls, account, activity, resolved, now)
        )
    except (ProtocolError, c2s.UnsupportedActivity, InvalidAction, InvalidPost) as exc:
        raise ApiError(422, str(exc)) from None
    document = {"@context": AS2_CONTEXT, **{k: v for k, v in published.items() if k != "@context"}}
    response = as2_response(document, "application/activity+json", status=201)
    response.headers["Location"] = published["id"]
    return response


async def _resolve(request: web.Request, activity: dict[str, Any]) -> c2s.Resolved:
    """Look up (fetching if need be) the actors and objects an activity names."""
    federation = request.app[FEDERATION]
    urls = request.app[URLS]
    accounts: dict[str, Account] = {}
    statuses: dict[str, Status] = {}
    for uri in c2s.referenced_actors(activity):
        async with request.app[DATABASE].read() as conn:
            known = await account_for_actor(conn, uri, urls.base_url)
        if known is None and not uri.startswith(urls.base_url + "/"):
            try:
                actor = await federation.directory.get(uri)
            except (ActorUnavailable, FetchError) as exc:
                raise ApiError(422, f"the actor {uri} could not be fetched: {exc}") from None
            async with request.app[DATABASE].transaction() as conn:
                known = await upsert_remote_account(conn, actor, request.app[FEDERATION].clock())
        if known is not None:
            accounts[uri] = known
    for uri in c2s.referenced_objects(activity):
        async with request.app[DATABASE].read() as conn:
            status = await status_by_uri(conn, uri)
        if status is None and not uri.startswith(urls.base_url + "/"):
            try:
                found = await federation.resolve_url(uri)
            except (ActorUnavailable, FetchError) as exc:
                raise ApiError(422, f"the object {uri} could not be fetched: {exc}") from None
            status = found if isinstance(found, Status) else None
        if status is not None:
            statuses[uri] = status
    return c2s.Resolved(accounts, statuses)


@routes.get("/users/{username}/inbox")
async def read_inbox(request: web.Request) -> web.Response:
    """The owner's inbox: what reached their home feed, as activities, newest first."""
    account = await _owner(request, "read")
    urls = request.app[URLS]
    inbox_id = urls.actor_collection(account, "inbox")
    params = await request_params(request)
    async with request.app[DATABASE].read() as conn:
        total = await home_feed_size(conn, account)
        if "page" not in request.query:
            document = render_ordered_collection(inbox_id, total, f"{inbox_id}?page=true")
            return as2_response(document, request.headers.get("Accept"))
        page = page_request(params)
        found = await home_timeline(conn, account, page)
        items = await as_activities(conn, urls, found)
    next_page = f"{inbox_id}?page=true&max_id={found[-1].id}" if len(found) == page.limit else None
    suffix = f"&max_id={page.max_id}" if page.max_id else ""
    document = render_ordered_collection_page(
        f"{inbox_id}?page=true{suffix}", inbox_id, items, total, next_page
    )
    return as2_response(document, request.headers.get("Accept"))


@routes.post("/api/kith/v1/proxy")
async def proxy(request: web.Request) -> web.Response:
    """`endpoints.proxyUrl`: fetch a remote object for a C2S client, signed by this node."""
    await require_account(request, "read")
    params = await request_params(request)
    url = string(params, "id", max_length=2048)
    if not url or not url.startswith(("https://", "http://")):
        raise ApiError(422, "id must be an http(s) URL")
    try:
        fetched = await request.app[FEDERATION].fetcher.get_object(url)
    except FetchError as exc:
        raise ApiError(502, "the object could not be fetched", str(exc)) from None
    return as2_response(fetched.document, "application/activity+json")
