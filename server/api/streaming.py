"""Mastodon's streaming API: one WebSocket with subscribe/unsubscribe, and SSE per stream.

Every event is rendered for the subscriber who receives it (what they may see, their own
favourite/boost flags), so one commit may be rendered several times — once per listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import select

from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter
from server.api.mastodon.notifications import render_conversations, render_notifications
from server.appkeys import DATABASE, URLS
from server.identity.accounts import Account
from server.social.statuses import status_by_id
from server.social.visibility import can_see
from server.storage.engine import EventChannel
from server.storage.tables import conversations, mutes, notifications
from server.streaming import (
    CHANNEL,
    Delivery,
    StreamHub,
    Subscription,
    TooManyStreams,
    decode_event,
    encode_event,
)

log = logging.getLogger("kith.streaming")
routes = web.RouteTableDef()
STREAM_HUB = web.AppKey("stream_hub", StreamHub)
HEARTBEAT_S = 15.0
_TAG_LENGTH_MAX = 100
_SCOPES = {
    "user": "read:statuses",
    "user:notification": "read:notifications",
    "public": "read:statuses",
    "public:local": "read:statuses",
    "public:remote": "read:statuses",
    "hashtag": "read:statuses",
    "hashtag:local": "read:statuses",
    "direct": "read:statuses",
}


def install(app: web.Application) -> StreamHub:
    """Give the app a hub fed by the database's committed events, closed on shutdown."""
    hub = StreamHub()
    app[STREAM_HUB] = hub
    db = app[DATABASE]
    db.event_sink = hub.publish

    async def close_streams(app: web.Application) -> None:
        hub.shutdown()

    app.on_shutdown.append(close_streams)
    if not db.is_sqlite:
        db.event_channel = EventChannel(CHANNEL, encode_event)

        def heard(payload: str) -> None:
            event = decode_event(payload)
            if event is not None:
                hub.publish([event])

        async def listen(app: web.Application) -> AsyncIterator[None]:
            listener = asyncio.create_task(db.listen(CHANNEL, heard))
            yield
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

        app.cleanup_ctx.append(listen)
    return hub


def internal_stream(name: str, tag: str | None, account: Account) -> str:
    """The hub's name for a client's stream (`user` → `user:42`); 422 for unknown streams."""
    if name not in _SCOPES:
        raise ApiError(422, f"unknown stream {name!r}")
    if name.startswith("hashtag"):
        tag = (tag or "").lstrip("#").lower()
        if not tag or len(tag) > _TAG_LENGTH_MAX:
            raise ApiError(422, "a hashtag stream needs a tag")
        return f"{name}:{tag}"
    if name in ("user", "user:notification", "direct"):
        return f"{name}:{account.id}"
    return name


def _client_stream(stream: str) -> list[str]:
    """The `stream` field Mastodon sends: `["hashtag", "cats"]`, `["user"]`, …"""
    for prefix in ("hashtag:local:", "hashtag:"):
        if stream.startswith(prefix):
            return [prefix[:-1], stream[len(prefix) :]]
    for name in ("user:notification", "user", "direct"):
        if stream.startswith(name + ":"):
            return [name]
    return [stream]


async def render(request: web.Request, viewer: Account, delivery: Delivery) -> str | None:
    """The event's payload as `viewer` may see it (a JSON text); None to leave it out."""
    if delivery.event == "delete":
        return str(delivery.subject_id)
    async with request.app[DATABASE].read() as conn:
        presenter = Presenter(conn, request.app[URLS], viewer)
        if delivery.event in ("update", "status.update"):
            status = await status_by_id(conn, delivery.subject_id)
            if status is None or not await can_see(conn, viewer, status):
                return None
            if await _muted(conn, viewer, status.account_id):
                return None
            return json.dumps(await presenter.status(status))
        if delivery.event == "notification":
            rows = await conn.execute(
                select(notifications).where(
                    notifications.c.id == delivery.subject_id,
                    notifications.c.account_id == viewer.id,
                )
            )
            rendered = await render_notifications(presenter, rows.all())
            return json.dumps(rendered[0]) if rendered else None
        if delivery.event == "conversation":
            rows = await conn.execute(
                select(conversations).where(
                    conversations.c.id == delivery.subject_id,
                    conversations.c.account_id == viewer.id,
                )
            )
            rendered = await render_conversations(presenter, rows.all())
            return json.dumps(rendered[0]) if rendered else None
    return None


async def _muted(conn: Any, viewer: Account, author_id: int) -> bool:
    row = await conn.execute(
        select(mutes.c.id).where(
            mutes.c.account_id == viewer.id, mutes.c.target_account_id == author_id
        )
    )
    return row.first() is not None


async def _authenticated(request: web.Request, stream: str | None) -> Account:
    return await require_account(request, _SCOPES.get(stream or "user", "read:statuses"))


def _open(request: web.Request, account: Account) -> Subscription:
    try:
        return request.app[STREAM_HUB].open(account.id)
    except TooManyStreams as exc:
        raise ApiError(429, str(exc)) from None


# --- WebSocket ------------------------------------------------------------------------------


@routes.get("/api/v1/streaming")
async def websocket(request: web.Request) -> web.StreamResponse:
    """`{"type": "subscribe", "stream": "user"}` in, `{"stream", "event", "payload"}` out."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    account = await _authenticated(request, request.query.get("stream"))
    hub = request.app[STREAM_HUB]
    subscription = _open(request, account)
    socket = web.WebSocketResponse(
        heartbeat=HEARTBEAT_S, protocols=[p for p in offered if p], max_msg_size=64 * 1024
    )
    try:
        await socket.prepare(request)
        if "stream" in request.query:
            _apply(hub, subscription, account, "subscribe", request.query)
        sender = asyncio.create_task(_send_events(request, socket, account, subscription))
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                await _command(socket, hub, subscription, account, message.data)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    finally:
        hub.close(subscription)
    return socket


async def _command(
    socket: web.WebSocketResponse,
    hub: StreamHub,
    subscription: Subscription,
    account: Account,
    text: str,
) -> None:
    try:
        command = json.loads(text)
        if not isinstance(command, dict):
            raise ValueError
        _apply(hub, subscription, account, command.get("type"), command)
    except (ValueError, RecursionError):
        await socket.send_json({"error": "messages are JSON objects with a type and a stream"})
    except ApiError as exc:
        await socket.send_json({"error": exc.error, "status": exc.status})


def _apply(
    hub: StreamHub, subscription: Subscription, account: Account, kind: Any, fields: Any
) -> None:
    stream, tag = fields.get("stream"), fields.get("tag")
    if not isinstance(stream, str) or not (tag is None or isinstance(tag, str)):
        raise ApiError(422, "stream (and tag) must be strings")
    internal = internal_stream(stream, tag, account)
    if kind == "subscribe":
        hub.subscribe(subscription, internal)
    elif kind == "unsubscribe":
        hub.unsubscribe(subscription, internal)
    else:
        raise ApiError(422, "type must be subscribe or unsubscribe")


async def _send_events(
    request: web.Request,
    socket: web.WebSocketResponse,
    account: Account,
    subscription: Subscription,
) -> None:
    async for delivery in subscription.deliveries():
        payload = await render(request, account, delivery)
        if payload is None:
            continue
        await socket.send_json(
            {"stream": _client_stream(delivery.stream), "event": delivery.event, "payload": payload}
        )
    await socket.close()


# --- Server-sent events ---------------------------------------------------------------------


def _sse(stream: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        account = await _authenticated(request, stream)
        internal = internal_stream(stream, request.query.get("tag"), account)
        hub = request.app[STREAM_HUB]
        subscription = _open(request, account)
        hub.subscribe(subscription, internal)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b":)\n\n")
            async for item in _with_heartbeats(subscription):
                if item is None:
                    await response.write(b":thump\n\n")
                    continue
                payload = await render(request, account, item)
                if payload is not None:
                    await response.write(f"event: {item.event}\ndata: {payload}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.close(subscription)
        return response

    return handler


async def _with_heartbeats(subscription: Subscription) -> AsyncIterator[Delivery | None]:
    """The subscription's deliveries, with None whenever it has been quiet for a heartbeat."""
    while True:
        try:
            async with asyncio.timeout(HEARTBEAT_S):
                delivery = await subscription.queue.get()
        except TimeoutError:
            yield None
            continue
        if delivery is None:
            return
        yield delivery


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
