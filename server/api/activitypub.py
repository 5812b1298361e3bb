"""ActivityPub documents served to peers: actors and their collections."""

from __future__ import annotations

from aiohttp import web

from protocol.activities import ACTIVITY_CONTEXT, render_note
from protocol.addressing import is_public
from protocol.collections import render_ordered_collection, render_ordered_collection_page
from protocol.vocab import AS2_CONTEXT, AS2_MEDIA_TYPE, AS2_PROFILE_MEDIA_TYPE, LD_MEDIA_TYPE
from server.api.errors import ApiError
from server.api.negotiation import require
from server.api.params import path_id
from server.api.responses import json_document
from server.appkeys import DATABASE, URLS
from server.identity.accounts import Account, find_account, instance_actor
from server.social.actors import local_actor_document
from server.social.collections import COLLECTIONS
from server.social.statuses import author_of, note_document, status_by_id
from server.urls import Urls

routes = web.RouteTableDef()

HTML = "text/html"
JSON = "application/json"
# HTML first: a browser's */* gets the profile page, as on Mastodon.
ACTOR_OFFERS = [HTML, AS2_MEDIA_TYPE, LD_MEDIA_TYPE, JSON]
AS2_OFFERS = [AS2_MEDIA_TYPE, LD_MEDIA_TYPE, JSON]
_VARY = {"Vary": "Accept"}


def as2_response(document: dict, accept: str | None, status: int = 200) -> web.Response:
    """An AS2 document in the flavour asked for (`ld+json; profile=…` or `activity+json`)."""
    chosen = require(accept, AS2_OFFERS)
    media_type = AS2_PROFILE_MEDIA_TYPE if chosen == LD_MEDIA_TYPE else AS2_MEDIA_TYPE
    return json_document(document, media_type, status=status, headers=_VARY)


async def _load_actor(request: web.Request) -> tuple[Account, Urls]:
    name = request.match_info.get("username")
    async with request.app[DATABASE].read() as conn:
        account = await instance_actor(conn) if name is None else await find_account(conn, name)
    if account is None or account.is_pending:  # a sign-up not yet approved is nobody yet
        raise ApiError(404, "not found", "no such actor")
    return account, request.app[URLS]


@routes.get("/users/{username}")
@routes.get("/actor")
async def actor(request: web.Request) -> web.StreamResponse:
    """The actor document; browsers are sent to the profile page."""
    account, urls = await _load_actor(request)
    chosen = require(request.headers.get("Accept"), ACTOR_OFFERS)
    if chosen == HTML:
        raise web.HTTPFound(urls.profile(account), headers=_VARY)
    if account.is_deleted:
        tombstone = {
            "@context": AS2_CONTEXT,
            "id": urls.actor(account),
            "type": "Tombstone",
            "formerType": account.actor_type,
        }
        return as2_response(tombstone, request.headers.get("Accept"), status=410)
    async with request.app[DATABASE].read() as conn:
        document = await local_actor_document(conn, urls, account)
    return as2_response(document, request.headers.get("Accept"))


def _collection_handler(name: str):
    count, page = COLLECTIONS[name]

    async def collection(request: web.Request) -> web.Response:
        """An actor's collection: the root document, or a page with `?page=true[&max_id=]`."""
        account, urls = await _load_actor(request)
        if account.is_deleted:
            raise ApiError(410, "gone", "this account has been deleted")
        collection_id = urls.actor_collection(account, name)
        async with request.app[DATABASE].read() as conn:
            total = await count(conn, account)
            if "page" not in request.query:
                document = render_ordered_collection(
                    collection_id, total, f"{collection_id}?page=true"
                )
            else:
                max_id = _max_id(request)
                found = await page(conn, urls, account, max_id)
                suffix = f"&max_id={max_id}" if max_id is not None else ""
                next_page = (
                    f"{collection_id}?page=true&max_id={found.next_max_id}"
                    if found.next_max_id is not None
                    else None
                )
                document = render_ordered_collection_page(
                    f"{collection_id}?page=true{suffix}",
                    collection_id,
                    found.items,
                    total,
                    next_page,
                )
        return as2_response(document, request.headers.get("Accept"))

    return collection


def _max_id(request: web.Request) -> int | None:
    value = request.query.get("max_id")
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise ApiError(400, "bad request", "max_id must be a status or follow id")
    return int(value)


def add_collection_routes(router: web.UrlDispatcher) -> None:
    """One route per actor collection, for users and for the instance actor."""
    for name in COLLECTIONS:
        handler = _collection_handler(name)
        for prefix in ("/users/{username}", "/actor"):
            router.add_get(f"{prefix}/{name}", handler)


@routes.get("/objects/{status_id:[0-9]+}")
async def note(request: web.Request) -> web.StreamResponse:
    """A local public or unlisted post as its Note (others are not served unsigned)."""
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        status = await status_by_id(conn, path_id(request, "status_id"))
        if status is None or status.reblog_of_id is not None or not is_public(status.visibility):
            raise ApiError(404, "not found", "no such object")
        author = await author_of(conn, status)
        if not author.is_local or author.is_suspended:
            raise ApiError(404, "not found", "no such object")
        document = render_note(await note_document(conn, status, urls))
    chosen = require(request.headers.get("Accept"), [HTML, *AS2_OFFERS])
    if chosen == HTML:
        raise web.HTTPFound(urls.status_page(author, status.id), headers=_VARY)
    return as2_response({"@context": ACTIVITY_CONTEXT, **document}, request.headers.get("Accept"))
