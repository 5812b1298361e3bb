"""The streaming hub: committed stream events, rendered and handed to the clients listening.

Events are published by the database after a transaction commits (`Database.event_sink`), so
a client never hears of a change that was rolled back. On PostgreSQL they travel by NOTIFY on
the `kith_stream` channel instead, so that every node process sharing the database hears what
any of them committed (the payloads are encoded here).

Each event is rendered once for all the viewers listening to it in this process (the renderer
is given every viewer at once and batches its queries), then queued for each subscription in
commit order. Queues are bounded: a client too slow to keep up is dropped rather than allowed
to grow the node's memory, and so is an event that arrives while too many wait to be rendered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from server.identity.accounts import Account
from server.social.events import StreamEvent

log = logging.getLogger("kith.streaming")

CHANNEL = "kith_stream"
QUEUE_MESSAGES_MAX = 512
CONNECTIONS_PER_ACCOUNT_MAX = 20
# Events committed but not yet rendered; beyond this they are dropped (and logged).
BACKLOG_EVENTS_MAX = 1000
RENDERS_IN_FLIGHT = 4
# PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more.
NOTIFY_PAYLOAD_BYTES_MAX = 7900

# Payloads of one event for each viewer id that may see it (absent: not shown to them).
Renderer = Callable[[StreamEvent, list[Account]], Awaitable[dict[int, str]]]


# --- events between processes (PostgreSQL NOTIFY) -------------------------------------------


def encode_events(events: Iterable[Any]) -> list[str]:
    """A transaction's stream events as few NOTIFY payloads as fit PostgreSQL's size limit.

    A payload is a JSON list of `[streams, event, subject_id]`; an event whose stream list
    alone is too long (a post fanned out to thousands of home feeds) is split across payloads.
    """
    items: list[str] = []
    for event in events:
        if isinstance(event, StreamEvent):
            items.extend(_encoded_items(event))
    payloads: list[str] = []
    current: list[str] = []
    size = 2
    for item in items:
        if current and size + len(item) + 1 > NOTIFY_PAYLOAD_BYTES_MAX:
            payloads.append("[" + ",".join(current) + "]")
            current, size = [], 2
        current.append(item)
        size += len(item) + 1
    if current:
        payloads.append("[" + ",".join(current) + "]")
    return payloads


def _encoded_items(event: StreamEvent) -> list[str]:
    # Compact JSON escapes non-ASCII, so characters and bytes count the same.
    def item(streams: list[str]) -> str:
        return json.dumps([streams, event.event, event.subject_id], separators=(",", ":"))

    budget = NOTIFY_PAYLOAD_BYTES_MAX - len(item([])) - 2
    items, chunk, size = [], [], 0
    for stream in event.streams:
        cost = len(json.dumps(stream)) + 1
        if chunk and size + cost > budget:
            items.append(item(chunk))
            chunk, size = [], 0
        chunk.append(stream)
        size += cost
    if chunk:
        items.append(item(chunk))
    return items


def decode_events(payload: str) -> list[StreamEvent]:
    """The events of one NOTIFY payload; a malformed one is logged and ignored."""
    try:
        return [
            StreamEvent(tuple(str(s) for s in streams), str(kind), int(subject_id))
            for streams, kind, subject_id in json.loads(payload)
        ]
    except (ValueError, TypeError):
        log.warning("ignored a malformed stream event payload")
        return []


# --- subscriptions ------------------------------------------------------------------------


class TooManyStreams(Exception):
    """The account already holds the most connections a node allows it."""


@dataclass(frozen=True)
class Message:
    """One rendered event for one subscription, on one of its streams."""

    stream: str  # internal name, such as `user:42` or `hashtag:cats`
    event: str
    payload: str


@dataclass(eq=False)
class Subscription:
    """A connected client: who it is, what its token may read, and its streams."""

    viewer: Account
    reads_notifications: bool = True
    streams: set[str] = field(default_factory=set)
    # What the client calls each stream (`["hashtag", "Cats"]` for `hashtag:cats`).
    labels: dict[str, list[str]] = field(default_factory=dict)
    queue: asyncio.Queue[Message | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_MESSAGES_MAX)
    )
    ended: bool = False

    async def messages(self) -> AsyncIterator[Message]:
        """Messages as they come; ends when the hub closes or the client fell behind."""
        while True:
            message = await self.queue.get()
            if message is None:
                return
            yield message

    def end(self) -> None:
        """Wake the connection up to finish (what is still queued is dropped)."""
        if self.ended:
            return
        self.ended = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass
class _Job:
    event: StreamEvent
    targets: list[tuple[Subscription, str]]
    rendering: asyncio.Future[dict[int, str]]


class StreamHub:
    """Who listens to which stream in this process, and the ordered delivery of events."""

    def __init__(self, render: Renderer) -> None:
        self._render = render
        self._by_stream: dict[str, set[Subscription]] = defaultdict(set)
        self._by_account: dict[int, set[Subscription]] = defaultdict(set)
        self._backlog: asyncio.Queue[_Job] = asyncio.Queue(BACKLOG_EVENTS_MAX)
        self._renders = asyncio.Semaphore(RENDERS_IN_FLIGHT)

    def open(self, viewer: Account, reads_notifications: bool = True) -> Subscription:
        """A new connection for `viewer`; TooManyStreams past the per-account cap."""
        if len(self._by_account[viewer.id]) >= CONNECTIONS_PER_ACCOUNT_MAX:
            raise TooManyStreams(f"at most {CONNECTIONS_PER_ACCOUNT_MAX} streams per account")
        subscription = Subscription(viewer, reads_notifications)
        self._by_account[viewer.id].add(subscription)
        return subscription

    def subscribe(self, subscription: Subscription, stream: str) -> None:
        if subscription.ended:
            return
        subscription.streams.add(stream)
        self._by_stream[stream].add(subscription)

    def unsubscribe(self, subscription: Subscription, stream: str) -> None:
        subscription.streams.discard(stream)
        listeners = self._by_stream.get(stream)
        if listeners is not None:
            listeners.discard(subscription)
            if not listeners:
                del self._by_stream[stream]

    def close(self, subscription: Subscription) -> None:
        """Forget a connection (it closed, or is being dropped)."""
        for stream in list(subscription.streams):
            self.unsubscribe(subscription, stream)
        owned = self._by_account.get(subscription.viewer.id)
        if owned is not None:
            owned.discard(subscription)
            if not owned:
                del self._by_account[subscription.viewer.id]

    def connections(self) -> int:
        return sum(len(owned) for owned in self._by_account.values())

    def publish(self, events: list[Any]) -> None:
        """The database's event sink: start rendering the events somebody here listens to."""
        for event in events:
            if not isinstance(event, StreamEvent):
                continue
            targets = self._targets(event)
            if not targets:
                continue
            if self._backlog.full():
                log.warning("stream backlog full; an event was dropped", extra={"ev": event.event})
                continue
            viewers = {subscription.viewer.id: subscription.viewer for subscription, _ in targets}
            rendering = asyncio.ensure_future(self._rendered(event, list(viewers.values())))
            self._backlog.put_nowait(_Job(event, targets, rendering))

    def _targets(self, event: StreamEvent) -> list[tuple[Subscription, str]]:
        targets = []
        for stream in event.streams:
            for subscription in self._by_stream.get(stream, ()):
                # As Mastodon: the user stream carries notifications only for tokens that
                # may read them.
                if event.event == "notification" and not subscription.reads_notifications:
                    continue
                targets.append((subscription, stream))
        return targets

    async def _rendered(self, event: StreamEvent, viewers: list[Account]) -> dict[int, str]:
        async with self._renders:
            return await self._render(event, viewers)

    async def run(self) -> None:
        """Hand rendered events to their subscriptions in commit order, until cancelled."""
        try:
            while True:
                job = await self._backlog.get()
                try:
                    payloads = await job.rendering
                except Exception:
                    log.exception("a stream event could not be rendered")
                    continue
                for subscription, stream in job.targets:
                    payload = payloads.get(subscription.viewer.id)
                    if payload is not None and stream in subscription.streams:
                        self._offer(subscription, Message(stream, job.event.event, payload))
        finally:
            while not self._backlog.empty():
                job = self._backlog.get_nowait()
                job.rendering.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job.rendering

    def _offer(self, subscription: Subscription, message: Message) -> None:
        try:
            subscription.queue.put_nowait(message)
        except asyncio.QueueFull:
            log.info(
                "a streaming client fell behind; dropping it",
                extra={"account": subscription.viewer.id},
            )
            self.close(subscription)
            subscription.end()

    def shutdown(self) -> None:
        """End every subscription (the node is stopping)."""
        for owned in list(self._by_account.values()):
            for subscription in list(owned):
                self.close(subscription)
                subscription.end()
