"""The streaming hub: committed stream events, handed to the clients subscribed to them.

Events are published by the database after a transaction commits (`Database.event_sink`), so
a client never hears of a change that was rolled back. Each subscription has a bounded queue;
a client too slow to keep up is dropped rather than allowed to grow the node's memory.
On PostgreSQL, events travel by NOTIFY on the `kith_stream` channel instead, so that every
node process sharing the database hears what any of them committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from server.social.distribution import StreamEvent

log = logging.getLogger("kith.streaming")

QUEUE_EVENTS_MAX = 512
SUBSCRIPTIONS_PER_ACCOUNT_MAX = 20


CHANNEL = "kith_stream"


def encode_event(event: StreamEvent) -> str:
    """A committed stream event as a NOTIFY payload (well under PostgreSQL's 8,000 bytes)."""
    return json.dumps([list(event.streams), event.event, event.subject_id])


def decode_event(payload: str) -> StreamEvent | None:
    try:
        streams, kind, subject_id = json.loads(payload)
        return StreamEvent(tuple(str(s) for s in streams), str(kind), int(subject_id))
    except (ValueError, TypeError):
        log.warning("ignored a malformed stream event payload")
        return None


class TooManyStreams(Exception):
    """The account already holds the most connections a node allows it."""


@dataclass(frozen=True)
class Delivery:
    """One event for one subscription: which of its streams it came on, and what happened."""

    stream: str
    event: str
    subject_id: int


@dataclass(eq=False)
class Subscription:
    """A connected client's streams (internal names such as `user:42`)."""

    account_id: int
    streams: set[str] = field(default_factory=set)
    queue: asyncio.Queue[Delivery | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_EVENTS_MAX)
    )
    overflowed: bool = False

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Events as they come; ends when the hub closes or the client fell too far behind."""
        while True:
            delivery = await self.queue.get()
            if delivery is None:
                return
            yield delivery


class StreamHub:
    """Who listens to which stream, in this process."""

    def __init__(self) -> None:
        self._by_stream: dict[str, set[Subscription]] = defaultdict(set)
        self._by_account: dict[int, set[Subscription]] = defaultdict(set)

    def open(self, account_id: int) -> Subscription:
        if len(self._by_account[account_id]) >= SUBSCRIPTIONS_PER_ACCOUNT_MAX:
            raise TooManyStreams(f"at most {SUBSCRIPTIONS_PER_ACCOUNT_MAX} streams per account")
        subscription = Subscription(account_id)
        self._by_account[account_id].add(subscription)
        return subscription

    def subscribe(self, subscription: Subscription, stream: str) -> None:
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
        for stream in list(subscription.streams):
            self.unsubscribe(subscription, stream)
        owned = self._by_account.get(subscription.account_id)
        if owned is not None:
            owned.discard(subscription)
            if not owned:
                del self._by_account[subscription.account_id]

    def publish(self, events: list[Any]) -> None:
        """The database's event sink: fan committed events out to subscriptions."""
        for event in events:
            streams = getattr(event, "streams", None)
            if streams is None:
                continue
            for stream in streams:
                for subscription in list(self._by_stream.get(stream, ())):
                    self._offer(subscription, Delivery(stream, event.event, event.subject_id))

    def _offer(self, subscription: Subscription, delivery: Delivery) -> None:
        if subscription.overflowed:
            return
        try:
            subscription.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            log.info(
                "a streaming client fell behind; dropping it",
                extra={"account": subscription.account_id},
            )
            subscription.overflowed = True
            self.close(subscription)
            subscription.queue.get_nowait()  # make room for the end marker
            subscription.queue.put_nowait(None)

    def shutdown(self) -> None:
        """End every subscription (the node is stopping)."""
        for owned in list(self._by_account.values()):
            for subscription in list(owned):
                self.close(subscription)
                with contextlib.suppress(asyncio.QueueFull):
                    subscription.queue.put_nowait(None)
