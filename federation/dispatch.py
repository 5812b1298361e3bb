"""The table of inbound activity handlers, filled by the server at start-up.

Federation never imports the social domain or payments; they register here instead. A
handler is two steps: `prefetch` (optional, outside any transaction: remote fetches) and
`apply` (inside the worker's transaction; returns what to deliver, never sends).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

PRIORITY_DIRECT = 0  # private messages and payments: ahead of everything
PRIORITY_INTERACTIVE = 5  # follows, likes, replies to a person
PRIORITY_BULK = 10  # public fan-out


class Reject(Exception):
    """A permanent refusal of an activity (logged with the reason, never retried)."""


@dataclass(frozen=True)
class InboundActivity:
    """A verified activity taken from the inbox log."""

    item_id: int
    activity_id: str
    activity_type: str
    actor_uri: str
    activity: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True)
class Outbound:
    """An activity to deliver, signed by `signer_uri`, to these actors' inboxes."""

    activity: dict[str, Any]
    signer_uri: str
    recipients: tuple[str, ...]
    priority: int = PRIORITY_BULK
    # Explicit inbox URLs (e.g. a follower's shared inbox already known), besides recipients.
    inboxes: tuple[str, ...] = ()
    # Send again even if this activity already went to these inboxes (an answer repeated
    # because the peer asked again: it may have lost the first one).
    redeliver: bool = False
    # Ask the peer to answer in its HTTP response (RFC 7240 `Prefer: return=representation`);
    # the answer is applied like an inbox activity by a handler that takes answers.
    wants_answer: bool = False


Prefetch = Callable[[InboundActivity], Awaitable[Any]]
Apply = Callable[[AsyncConnection, InboundActivity, Any, datetime], Awaitable[list[Outbound]]]


@dataclass(frozen=True)
class Handler:
    apply: Apply
    prefetch: Prefetch | None = None
    # Applied while the sender waits, its answer returned in the HTTP response, when the
    # sender asks for one (the answer must stand on its own: signed with an object proof).
    answers_now: bool = False
    # Takes activities that came back as the answer to one of our POSTs: no HTTP signature,
    # so the handler must authenticate them by their object proof.
    takes_answers: bool = False


Matches = Callable[[dict[str, Any]], bool]


@dataclass
class Dispatcher:
    """Handlers by activity type. A route claims the activities of a type that match it
    (an Accept of a payment transfer, not of a Follow) before the type's own handler."""

    _handlers: dict[str, Handler] = field(default_factory=dict)
    _routes: dict[str, list[tuple[Matches, Handler]]] = field(default_factory=dict)

    def register(self, activity_type: str, apply: Apply, prefetch: Prefetch | None = None) -> None:
        if activity_type in self._handlers:
            raise ValueError(f"a handler for {activity_type} is already registered")
        self._handlers[activity_type] = Handler(apply=apply, prefetch=prefetch)

    def route(
        self,
        activity_type: str,
        matches: Matches,
        apply: Apply,
        prefetch: Prefetch | None = None,
        *,
        answers_now: bool = False,
        takes_answers: bool = False,
    ) -> None:
        """Handle the activities of `activity_type` for which `matches` is true."""
        handler = Handler(apply, prefetch, answers_now, takes_answers)
        self._routes.setdefault(activity_type, []).append((matches, handler))

    def handler_for(self, activity_type: str, activity: dict[str, Any]) -> Handler | None:
        for matches, handler in self._routes.get(activity_type, ()):
            if matches(activity):
                return handler
        return self._handlers.get(activity_type)

    def supports(self, activity_type: str) -> bool:
        return activity_type in self._handlers or activity_type in self._routes
