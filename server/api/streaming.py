"""Mastodon's streaming API: one WebSocket with subscribe/unsubscribe, and SSE per stream.

Every event is rendered as each listener may see it (visibility, blocks and mutes, their own
favourite/boost/bookmark flags). The status entity is rendered once per event and the
per-listener facts are read for all listeners together, so a post heard by a thousand clients
costs a handful of queries rather than a thousand renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import literal, or_, select, union, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from payments import requests, settlement
from payments.money import Currencies
from server.api.auth import bearer_token, require_grant
from server.api.chats import render_chat
from server.api.errors import ApiError
from server.api.mastodon.conversations import render_conversations
from server.api.mastodon.entities import Presenter
from server.api.mastodon.notifications import render_notifications, visible_pairs
from server.api.payments import request_entity, transfer_entity
from server.appkeys import CLOCK, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account
from server.identity.tokens import Grant, authenticate
from server.paying import REQUEST_EVENT, TRANSFER_EVENT
from server.social import chats
from server.social.events import StreamEvent
from server.social.statuses import Status, status_by_id
from server.storage.engine import Database, EventChannel
from server.storage.tables import (
    blocks,
    bookmarks,
    conversations,
    favourites,
    mentions,
    mutes,
    notifications,
    statuses,
)
from server.streaming import (
    CHANNEL,
    StreamHub,
    Subscription,
    TooManyStreams,
    decode_events,
    encode_events,
)
from server.urls import Urls
from server.web.sessions import session_grant, stream_grant

log = logging.getLogger("kith.streaming")
routes = web.RouteTableDef()
STREAM_HUB = web.AppKey("stream_hub", StreamHub)
HEARTBEAT_S = 15.0
# How often a quiet SSE connection looks whether its client has gone.
_IDLE_CHECK_S = 5.0
# A revoked or expired token stops streaming within this long.
TOKEN_RECHECK_S = 60.0
# A client that takes longer than this to accept one message is dropped.
WRITE_TIMEOUT_S = 10.0
_TAG_LENGTH_MAX = 100
_VIEWERS_PER_QUERY = 500
_SCOPES = {
    "user": "read:statuses",
    "user:notification": "read:notifications",
    "public": "read:statuses",
    "public:media": "read:statuses",
    "public:local": "read:statuses",
    "public:local:media": "read:statuses",
    "public:remote": "read:statuses",
    "public:remote:media": "read:statuses",
    "hashtag": "read:statuses",
    "hashtag:local": "read:statuses",
    "direct": "read:statuses",
}
_FLAGS = ("favourited", "reblogged", "bookmarked")


def install(app: web.Application) -> StreamHub:
    """Give the app a hub fed by the database's committed events, closed on shutdown."""
    db, urls = app[DATABASE], app[URLS]
    currencies, clock = app[FEDERATION].payments.currencies, app[CLOCK]

    async def render(event: StreamEvent, viewers: list[Account]) -> dict[int, str]:
        return await render_event(db, urls, event, viewers, (currencies, clock()))

    hub = StreamHub(render)
    app[STREAM_HUB] = hub
    db.event_sink = hub.publish
    if not db.is_sqlite:
        # Sent with pg_notify inside the committing transaction: PostgreSQL delivers it to
        # every listening process (this one included) only if the commit succeeds, and in
        # commit order; nothing is lost between a commit and a separate NOTIFY.
        db.event_channel = EventChannel(CHANNEL, encode_events)

    async def close_streams(app: web.Application) -> None:
        hub.shutdown()

    app.on_shutdown.append(close_streams)
    app.cleanup_ctx.append(_running(db, hub))
    return hub


def _running(db: Database, hub: StreamHub) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run())]
        if not db.is_sqlite:
            tasks.append(asyncio.create_task(db.listen(CHANNEL, _heard(hub))))
        yield
        hub.shutdown()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return run


def _heard(hub: StreamHub) -> Callable[[str], None]:
    def heard(payload: str) -> None:
        hub.publish(decode_events(payload))

    return heard


# --- rendering ------------------------------------------------------------------------------


async def render_event(
    db: Database,
    urls: Urls,
    event: StreamEvent,
    viewers: list[Account],
    money: tuple[Currencies, datetime],
) -> dict[int, str]:
    """The event's payload (a JSON text) for each viewer who may see it."""
    if event.event == "delete":
        return {viewer.id: str(event.subject_id) for viewer in viewers}
    async with db.read() as conn:
        if event.event in ("update", "status.update"):
            return await _status_payloads(conn, urls, event.subject_id, viewers)
        if event.event == "notification":
            return await _owned_payload(conn, urls, notifications, event.subject_id, viewers)
        if event.event == "conversation":
            return await _owned_payload(conn, urls, conversations, event.subject_id, viewers)
        if event.event in (REQUEST_EVENT, TRANSFER_EVENT):
            return await _payment_payload(conn, event, viewers, *money)
        if event.event == chats.CHAT_EVENT:
            return await _chat_payload(conn, urls, event.subject_id, viewers)
    return {}


async def _payment_payload(
    conn: AsyncConnection,
    event: StreamEvent,
    viewers: list[Account],
    currencies: Currencies,
    now: datetime,
) -> dict[int, str]:
    """A payment request or transfer, as the payments API shows it, to its local parties."""
    if event.event == REQUEST_EVENT:
        request = await requests.request_by_id(conn, event.subject_id)
        if request is None:
            return {}
        parties = {request.payee_account_id, request.payer_account_id}
        return {
            v.id: json.dumps(request_entity(request, v.id, currencies, now))
            for v in viewers
            if v.id in parties
        }
    transfer = await settlement.settlement_by_id(conn, event.subject_id)
    if transfer is None:
        return {}
    parties = {transfer.payer_account_id, transfer.payee_account_id}
    return {
        v.id: json.dumps(transfer_entity(transfer, v.id, currencies))
        for v in viewers
        if v.id in parties
    }


async def _chat_payload(
    conn: AsyncConnection, urls: Urls, chat_id: int, viewers: list[Account]
) -> dict[int, str]:
    """A chat as each of its members sees it (unread count, read markers)."""
    chat = await chats.chat_by_id(conn, chat_id)
    if chat is None:
        return {}
    members = {m.account.id for m in await chats.members_of(conn, chat_id)}
    return {
        viewer.id: json.dumps(await render_chat(Presenter(conn, urls, viewer), chat))
        for viewer in viewers
        if viewer.id in members
    }


async def _owned_payload(
    conn: AsyncConnection, urls: Urls, table: Any, subject_id: int, viewers: list[Account]
) -> dict[int, str]:
    """A notification or conversation: only its owner hears of it."""
    row = (await conn.execute(select(table).where(table.c.id == subject_id))).first()
    owner = next((v for v in viewers if row is not None and v.id == row.account_id), None)
    if owner is None:
        return {}
    presenter = Presenter(conn, urls, owner)
    if table is notifications:
        rendered = await render_notifications(presenter, [row])
    else:
        rendered = await render_conversations(presenter, [row])
    return {owner.id: json.dumps(rendered[0])} if rendered else {}


async def _status_payloads(
    conn: AsyncConnection, urls: Urls, status_id: int, viewers: list[Account]
) -> dict[int, str]:
    status = await status_by_id(conn, status_id)
    if status is None:
        return {}
    shown = [status]
    if status.reblog_of_id is not None:
        original = await status_by_id(conn, status.reblog_of_id)
        if original is None:
            return {}
        shown.append(original)
    ids = [viewer.id for viewer in viewers]
    allowed: list[int] = []
    for start in range(0, len(ids), _VIEWERS_PER_QUERY):
        allowed += await _allowed(conn, ids[start : start + _VIEWERS_PER_QUERY], shown)
    if not allowed:
        return {}
    # Rendered once without a viewer; only the viewer's own flags differ between listeners.
    base = await Presenter(conn, urls, None).status(status)
    marks = await _own_marks(conn, allowed, [s.id for s in shown])
    plain = json.dumps(base)
    return {
        viewer: json.dumps(_marked(base, marks[viewer])) if viewer in marks else plain
        for viewer in allowed
    }


async def _allowed(conn: AsyncConnection, viewers: list[int], shown: list[Status]) -> list[int]:
    """Viewers who may see the statuses and have not silenced them: as Mastodon's streaming
    server, a listener who blocks or mutes the author or anyone mentioned does not get it."""
    pairs = await visible_pairs(conn, viewers, shown)
    seeing = [v for v in viewers if all((v, s.id) in pairs for s in shown)]
    authors = {s.account_id for s in shown}
    others = [v for v in seeing if v not in authors]
    if not others:
        return seeing
    involved = or_(
        blocks.c.target_account_id.in_(authors),
        blocks.c.target_account_id.in_(
            select(mentions.c.account_id).where(mentions.c.status_id.in_([s.id for s in shown]))
        ),
    )
    muted = or_(
        mutes.c.target_account_id.in_(authors),
        mutes.c.target_account_id.in_(
            select(mentions.c.account_id).where(mentions.c.status_id.in_([s.id for s in shown]))
        ),
    )
    rows = await conn.execute(
        union(
            select(blocks.c.account_id).where(blocks.c.account_id.in_(others), involved),
            select(mutes.c.account_id).where(mutes.c.account_id.in_(others), muted),
        )
    )
    silenced = {row[0] for row in rows}
    return [v for v in seeing if v not in silenced]


async def _own_marks(
    conn: AsyncConnection, viewers: list[int], status_ids: list[int]
) -> dict[int, set[tuple[str, int]]]:
    """Each viewer's favourites, boosts and bookmarks among the statuses."""
    marks: dict[int, set[tuple[str, int]]] = {}
    for start in range(0, len(viewers), _VIEWERS_PER_QUERY):
        chunk = viewers[start : start + _VIEWERS_PER_QUERY]
        rows = await conn.execute(
            union_all(
                select(literal("favourited"), favourites.c.account_id, favourites.c.status_id)
                .where(favourites.c.account_id.in_(chunk))
                .where(favourites.c.status_id.in_(status_ids)),
                select(literal("reblogged"), statuses.c.account_id, statuses.c.reblog_of_id)
                .where(statuses.c.account_id.in_(chunk))
                .where(statuses.c.reblog_of_id.in_(status_ids)),
                select(literal("bookmarked"), bookmarks.c.account_id, bookmarks.c.status_id)
                .where(bookmarks.c.account_id.in_(chunk))
                .where(bookmarks.c.status_id.in_(status_ids)),
            )
        )
        for flag, viewer, status_id in rows:
            marks.setdefault(viewer, set()).add((flag, status_id))
    return marks


def _marked(entity: dict[str, Any], marks: set[tuple[str, int]]) -> dict[str, Any]:
    """The entity with one viewer's flags (a boost shows its original's, as Presenter does)."""
    copy = dict(entity)
    for flag in _FLAGS:
        copy[flag] = (flag, int(entity["id"])) in marks
    if entity.get("reblog"):
        copy["reblog"] = _marked(entity["reblog"], marks)
        for flag in _FLAGS:
            copy[flag] = copy["reblog"][flag]
    return copy


# --- streams, scopes and tokens -------------------------------------------------------------


def internal_stream(name: Any, tag: Any, account: Account) -> tuple[str, list[str]]:
    """The hub's name for a client's stream (`user` → `user:42`) and the `stream` field
    its events carry (`["hashtag", "Cats"]`); 422 for unknown streams."""
    if isinstance(name, list) and name:
        name = name[0]  # Mastodon reads the first of a repeated parameter
    if not isinstance(name, str) or name not in _SCOPES:
        raise ApiError(422, f"unknown stream {name!r}" if isinstance(name, str) else "no stream")
    if name.startswith("hashtag"):
        if not isinstance(tag, str) or not tag.lstrip("#") or len(tag) > _TAG_LENGTH_MAX:
            raise ApiError(422, "a hashtag stream needs a tag")
        tag = tag.lstrip("#")
        return f"{name}:{tag.lower()}", [name, tag]
    if name in ("user", "user:notification", "direct"):
        return f"{name}:{account.id}", [name]
    return name, [name]


def _check_scope(grant: Grant, stream: str) -> None:
    scope = _SCOPES[stream]
    if not grant.allows(scope):
        raise ApiError(
            403,
            "This action is outside the authorized scopes",
            f"the {stream} stream needs the {scope!r} scope",
        )


async def _listener(request: web.Request, *scopes: str) -> tuple[Grant, Account]:
    # The web client's pages never see a token: a same-origin WebSocket carries the session
    # cookie instead (server/web/sessions.py checks the Origin); a token, when sent, wins.
    session = await stream_grant(request) if bearer_token(request) is None else None
    if session is not None and any(session.allows(scope) for scope in scopes):
        return session, session.account  # type: ignore[return-value]  # sessions have users
    grant = await require_grant(request, *scopes)
    if grant.account is None:
        raise ApiError(422, "This method requires an authenticated user")
    return grant, grant.account


def _open(request: web.Request, grant: Grant, account: Account) -> Subscription:
    try:
        return request.app[STREAM_HUB].open(account, grant.allows("read:notifications"))
    except TooManyStreams as exc:
        raise ApiError(429, str(exc)) from None


async def _token_still_valid(request: web.Request) -> bool:
    token = bearer_token(request)
    if token is None:  # a web session's stream ends with the session (signed out, expired)
        return await session_grant(request, fresh=True) is not None
    async with request.app[DATABASE].read() as conn:
        return await authenticate(conn, token, request.app[CLOCK]()) is not None


async def _outgoing(request: web.Request, subscription: Subscription) -> AsyncIterator[Any]:
    """The subscription's messages, and None when it has been quiet for a while (time for a
    heartbeat or a look at the connection); ends when the hub ends the subscription or the
    token is no longer valid."""
    loop = asyncio.get_running_loop()
    checked = loop.time()
    while True:
        try:
            async with asyncio.timeout(_IDLE_CHECK_S):
                message = await subscription.queue.get()
        except TimeoutError:
            message = None
        else:
            if message is None:
                return
        if loop.time() - checked >= TOKEN_RECHECK_S:
            if not await _token_still_valid(request):
                return
            checked = loop.time()
        yield message


def _abort(request: web.Request) -> None:
    """Drop a connection that stopped reading (a graceful close would wait on it too)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


# --- WebSocket ------------------------------------------------------------------------------


@routes.get("/api/v1/streaming")
async def websocket(request: web.Request) -> web.StreamResponse:
    """`{"type": "subscribe", "stream": "user"}` in, `{"stream", "event", "payload"}` out."""
    grant, account = await _listener(request, "read:statuses", "read:notifications")
    first = None
    if "stream" in request.query:
        first = internal_stream(request.query.getall("stream"), request.query.get("tag"), account)
        _check_scope(grant, first[1][0])
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    hub = request.app[STREAM_HUB]
    subscription = _open(request, grant, account)
    socket = web.WebSocketResponse(
        heartbeat=HEARTBEAT_S, protocols=[p for p in offered if p], max_msg_size=64 * 1024
    )
    sending = asyncio.Lock()
    try:
        await socket.prepare(request)
        if first is not None:
            _subscribe(hub, subscription, first)
        sender = asyncio.create_task(_send_events(request, socket, subscription, sending))
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    await _command(socket, sending, hub, subscription, grant, message.data)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    finally:
        hub.close(subscription)
        subscription.end()
    return socket


def _subscribe(hub: StreamHub, subscription: Subscription, named: tuple[str, list[str]]) -> None:
    internal, label = named
    subscription.labels[internal] = label
    hub.subscribe(subscription, internal)


async def _command(
    socket: web.WebSocketResponse,
    sending: asyncio.Lock,
    hub: StreamHub,
    subscription: Subscription,
    grant: Grant,
    text: str,
) -> None:
    """One client message: subscribe or unsubscribe; mistakes are answered, not fatal."""
    try:
        command = json.loads(text)
        if not isinstance(command, dict):
            raise ValueError
        named = internal_stream(command.get("stream"), command.get("tag"), subscription.viewer)
        kind = command.get("type")
        if kind == "subscribe":
            _check_scope(grant, named[1][0])
            _subscribe(hub, subscription, named)
        elif kind == "unsubscribe":
            hub.unsubscribe(subscription, named[0])
        else:
            raise ApiError(422, "type must be subscribe or unsubscribe")
    except (ValueError, RecursionError):
        reply = {"error": "messages are JSON objects with a type and a stream"}
    except ApiError as exc:
        reply = {"error": exc.description or exc.error, "status": exc.status}
    else:
        return
    async with sending, asyncio.timeout(WRITE_TIMEOUT_S):
        await socket.send_str(json.dumps(reply))


async def _send_events(
    request: web.Request,
    socket: web.WebSocketResponse,
    subscription: Subscription,
    sending: asyncio.Lock,
) -> None:
    try:
        async for message in _outgoing(request, subscription):
            if message is None:
                continue  # aiohttp pings the client itself
            frame = {
                "stream": subscription.labels.get(message.stream, [message.stream]),
                "event": message.event,
                "payload": message.payload,
            }
            async with sending, asyncio.timeout(WRITE_TIMEOUT_S):
                await socket.send_str(json.dumps(frame))
    except (ConnectionError, TimeoutError):
        _abort(request)
        return
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await socket.close()
    except (ConnectionError, TimeoutError):
        _abort(request)


# --- Server-sent events ---------------------------------------------------------------------


def _sse(stream: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        grant, account = await _listener(request, _SCOPES[stream])
        if stream.startswith("public") and request.query.get("only_media", "") in _TRUE:
            named = internal_stream(stream + ":media", None, account)
        else:
            named = internal_stream(stream, request.query.get("tag"), account)
        hub = request.app[STREAM_HUB]
        subscription = _open(request, grant, account)
        _subscribe(hub, subscription, named)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await _write(response, b":)\n")
            await _stream_sse(request, response, subscription)
        except (ConnectionError, TimeoutError):
            _abort(request)
        finally:
            hub.close(subscription)
            subscription.end()
        return response

    return handler


_TRUE = ("1", "true", "t", "on", "yes")


async def _stream_sse(
    request: web.Request, response: web.StreamResponse, subscription: Subscription
) -> None:
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    async for message in _outgoing(request, subscription):
        if message is None:
            transport = request.transport
            if transport is None or transport.is_closing():
                return  # the client went away
            if loop.time() - last_write < HEARTBEAT_S:
                continue
            chunk = b":thump\n"
        else:
            chunk = f"event: {message.event}\ndata: {message.payload}\n\n".encode()
        await _write(response, chunk)
        last_write = loop.time()


async def _write(response: web.StreamResponse, chunk: bytes) -> None:
    async with asyncio.timeout(WRITE_TIMEOUT_S):
        await response.write(chunk)


for _path, _stream in (
    ("/api/v1/streaming/user", "user"),
    ("/api/v1/streaming/user/notification", "user:notification"),
    ("/api/v1/streaming/public", "public"),
    ("/api/v1/streaming/public/local", "public:local"),
    ("/api/v1/streaming/public/remote", "public:remote"),
    ("/api/v1/streaming/hashtag", "hashtag"),
    ("/api/v1/streaming/hashtag/local", "hashtag:local"),
    ("/api/v1/streaming/direct", "direct"),
):
    routes.get(_path)(_sse(_stream))


@routes.get("/api/v1/streaming/health")
async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")
