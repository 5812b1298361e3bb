"""ActivityPub client-to-server: the owner's outbox (POST, and GET with everything), inbox (GET)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from federation.actors import ActorUnavailable
from federation.fetch import FetchError
from protocol.activities import ACTIVITY_CONTEXT
from protocol.collections import render_ordered_collection, render_ordered_collection_page
from protocol.errors import ProtocolError
from protocol.jsonsafe import parse_json_document
from server.api import activitypub
from server.api.activitypub import as2_response
from server.api.auth import optional_grant, require_account
from server.api.errors import ApiError
from server.api.pagination import page_request
from server.api.params import path_id, request_params
from server.appkeys import CONFIG, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account
from server.social import c2s
from server.social.collections import as_activities
from server.social.graph import InvalidAction
from server.social.posting import InvalidPost
from server.social.remote_accounts import account_for_actor, upsert_remote_account
from server.social.statuses import Status, author_of, status_by_id, status_by_uri
from server.social.timelines import home_feed_size, home_timeline
from server.social.visibility import can_see

log = logging.getLogger("kith.c2s")
routes = web.RouteTableDef()
_AS2_TYPES = ("application/activity+json", "application/ld+json")
# What a client sees of its own boxes depends on its token: caches must not share it.
_PRIVATE = {"Vary": "Accept, Authorization", "Cache-Control": "private, no-store"}
_public_outbox = activitypub._collection_handler("outbox")


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
    try:
        document = parse_json_document(await _body(request))
    except ProtocolError as exc:
        raise ApiError(400, "the body is not an ActivityStreams object", str(exc)) from None
    urls = request.app[URLS]
    try:
        activity = c2s.wrap(document, urls.actor(account))
        resolved = await _resolve(request, account, activity)
        published = await request.app[FEDERATION].perform(
            lambda conn, now: c2s.perform(conn, urls, account, activity, resolved, now)
        )
    except (ProtocolError, c2s.UnsupportedActivity, InvalidAction, InvalidPost) as exc:
        raise ApiError(422, str(exc)) from None
    log.info("c2s activity", extra={"type": activity["type"], "activity_id": published["id"]})
    document = {"@context": ACTIVITY_CONTEXT, **published}
    response = as2_response(document, "application/activity+json", status=201)
    response.headers["Location"] = published["id"]
    return response


async def _body(request: web.Request) -> bytes:
    """The whole body, refused (413) once it passes the inbox's size limit."""
    limit = request.app[CONFIG].federation.inbox_body_bytes_max
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload too large", f"the outbox takes at most {limit} bytes")
    chunks, size = [], 0
    # StreamReader.read(n) returns what has arrived so far, not n bytes: read to the end.
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload too large", f"the outbox takes at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _resolve(
    request: web.Request, account: Account, activity: dict[str, Any]
) -> c2s.Resolved:
    """Look up (fetching if need be) the actors and objects an activity names."""
    urls = request.app[URLS]
    followers = urls.followers(account) or ""
    accounts: dict[str, Account] = {}
    for uri in c2s.referenced_actors(activity, followers):
        found = await _actor(request, uri)
        if found is not None:
            accounts[uri] = found
    statuses: dict[str, Status] = {}
    for uri in c2s.referenced_objects(activity):
        status = await _object(request, uri)
        if status is not None:
            statuses[uri] = status
    return c2s.Resolved(accounts, statuses)


async def _actor(request: web.Request, uri: str) -> Account | None:
    """A known account, or a remote actor fetched and stored now."""
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        known = await account_for_actor(conn, uri, urls.base_url)
    if known is not None or uri.startswith(urls.base_url + "/"):
        return known
    federation = request.app[FEDERATION]
    try:
        actor = await federation.directory.get(uri)
    except (ActorUnavailable, FetchError) as exc:
        raise ApiError(422, f"the actor {uri} could not be fetched: {exc}") from None
    async with request.app[DATABASE].transaction() as conn:
        return await upsert_remote_account(conn, actor, federation.clock())


async def _object(request: web.Request, uri: str) -> Status | None:
    """A known status, or a remote post fetched now (as a search with `resolve` does)."""
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        status = await status_by_uri(conn, uri)
    if status is not None or uri.startswith(urls.base_url + "/"):
        return status
    try:
        found = await request.app[FEDERATION].resolve_url(uri)
    except (ActorUnavailable, FetchError) as exc:
        raise ApiError(422, f"the object {uri} could not be fetched: {exc}") from None
    return found if isinstance(found, Status) else None


@routes.get("/users/{username}/outbox")
async def read_outbox(request: web.Request) -> web.StreamResponse:
    """The outbox: to its owner (by bearer token) every post; to anyone else the public one."""
    if not request.headers.get("Authorization", "").lower().startswith("bearer "):
        return await _public_outbox(request)
    grant = await optional_grant(request)
    owner = grant.account if grant is not None else None
    if owner is None or owner.username.lower() != request.match_info["username"].lower():
        return await _public_outbox(request)
    account = await _owner(request, "read")
    urls = request.app[URLS]
    outbox_id = urls.actor_collection(account, "outbox")
    async with request.app[DATABASE].read() as conn:
        total = await c2s.count_owner_outbox(conn, account)
        if "page" not in request.query:
            document = render_ordered_collection(outbox_id, total, f"{outbox_id}?page=true")
        else:
            max_id = activitypub._max_id(request)
            page = await c2s.owner_outbox_page(conn, urls, account, max_id)
            document = render_ordered_collection_page(
                _page_id(outbox_id, max_id),
                outbox_id,
                page.items,
                total,
                _page_id(outbox_id, page.next_max_id) if page.next_max_id else None,
            )
    return _private(as2_response(document, request.headers.get("Accept")))


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
            return _private(as2_response(document, request.headers.get("Accept")))
        page = page_request(params)
        found = await home_timeline(conn, account, page)
        items = await as_activities(conn, urls, found)
    next_page = _page_id(inbox_id, found[-1].id) if len(found) == page.limit else None
    document = render_ordered_collection_page(
        _page_id(inbox_id, page.max_id), inbox_id, items, total, next_page
    )
    return _private(as2_response(document, request.headers.get("Accept")))


@routes.get("/objects/{status_id:[0-9]+}/activity")
async def create_activity(request: web.Request) -> web.Response:
    """The Create that published a local post (the `Location` of a C2S Create): public posts
    to anyone, others to those who may see them (by bearer token)."""
    grant = await optional_grant(request)
    viewer = grant.account if grant is not None else None
    async with request.app[DATABASE].read() as conn:
        status = await status_by_id(conn, path_id(request, "status_id"))
        author = await author_of(conn, status) if status is not None else None
        if (
            status is None
            or author is None
            or not author.is_local
            or status.reblog_of_id is not None
            or not await can_see(conn, viewer, status)
        ):
            raise ApiError(404, "not found", "no such object")
        document = await c2s.create_activity(conn, request.app[URLS], author, status)
    response = as2_response(document, request.headers.get("Accept"))
    return _private(response) if grant is not None else response


def _page_id(collection_id: str, max_id: int | None) -> str:
    suffix = f"&max_id={max_id}" if max_id is not None else ""
    return f"{collection_id}?page=true{suffix}"


def _private(response: web.Response) -> web.Response:
    response.headers.update(_PRIVATE)
    return response
