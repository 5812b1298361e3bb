"""Activities answered in the HTTP response instead of by a later delivery.

A peer that sends an activity with `Prefer: return=representation` (RFC 7240) may get the
answer to it in the response: its handler is applied while the peer waits and whatever it
has to say back to the sender comes back with the 200. This saves the round of an inbox log,
a worker, a signed delivery and the peer's own inbox for exchanges where one message answers
another (a payment offer and its decision). Only handlers registered with `answers_now` are
applied this way; the answer must stand on its own (signed with an object proof), because it
carries no HTTP signature. On our side, an activity a peer answered with is applied by a
handler registered with `takes_answers`, which authenticates it by that proof.

Anything that cannot be answered now (a failure, not a refusal) is stored and applied later as
usual, so asking for an answer never loses an activity.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from federation.db import UnitOfWork
from federation.delivery import enqueue
from federation.dispatch import Dispatcher, Handler, InboundActivity, Reject
from federation.inbox import ACCEPTED, Receipt
from protocol.as2 import host_of, id_of, is_http_url

log = logging.getLogger("kith.federation.answers")


class Answers:
    """Applies activities whose answer travels in the HTTP response, both ways."""

    def __init__(
        self,
        db: UnitOfWork,
        dispatcher: Dispatcher,
        clock: Callable[[], datetime],
        new_id: Callable[[datetime], int],
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.clock = clock
        self.new_id = new_id
        self.on_queued = on_queued

    async def answer_now(
        self, activity: dict[str, Any], actor_uri: str, now: datetime
    ) -> Receipt | None:
        """Apply a verified activity from `actor_uri` and return the answer to send back;
        None if its handler does not answer at once or it could not be applied now."""
        handler = self.dispatcher.handler_for(activity["type"], activity)
        if handler is None or not handler.answers_now:
            return None
        item = InboundActivity(0, activity["id"], activity["type"], actor_uri, activity, now)
        try:
            prefetched = await handler.prefetch(item) if handler.prefetch else None
            async with self.db.transaction() as conn:
                outbound = await handler.apply(conn, item, prefetched, now)
                answer = next((o for o in outbound if o.recipients == (actor_uri,)), None)
                for other in outbound:
                    if other is not answer:
                        await enqueue(conn, other, self.new_id, now)
        except Reject as exc:
            _log_rejected(item, str(exc))
            return Receipt(422, str(exc))
        except Exception:
            log.warning(
                "could not answer an activity now; it is stored and applied later",
                extra={"activity": item.activity_id},
                exc_info=True,
            )
            return None
        if len(outbound) > (answer is not None):
            self.on_queued()
        return ACCEPTED if answer is None else Receipt(200, answer=answer.activity)

    async def take_answers(self, answers: list[tuple[str, dict[str, Any]]]) -> None:
        """Apply what peers answered with (each from the host that answered), in one
        transaction; one that is refused or fails is logged and changes nothing."""
        now = self.clock()
        ready: list[tuple[InboundActivity, Handler, Any]] = []
        for host, activity in answers:
            item = _answered_item(host, activity, now)
            handler = self.dispatcher.handler_for(item.activity_type, activity) if item else None
            if item is None or handler is None or not handler.takes_answers:
                log.info(
                    "ignored a peer's answer", extra={"host": host, "type": activity.get("type")}
                )
                continue
            try:
                ready.append(
                    (item, handler, await handler.prefetch(item) if handler.prefetch else None)
                )
            except Reject as exc:
                _log_rejected(item, str(exc))
            except Exception as exc:
                _log_failed(item, exc)
        if not ready:
            return
        queued = 0
        if len(ready) == 1:  # the transaction alone undoes a failure: no savepoint needed
            try:
                async with self.db.transaction() as conn:
                    queued += await self._apply(conn, *ready[0], now)
            except Reject as exc:
                _log_rejected(ready[0][0], str(exc))
            except Exception as exc:
                _log_failed(ready[0][0], exc)
        else:
            async with self.db.transaction() as conn:
                for item, handler, prefetched in ready:
                    try:
                        async with self.db.savepoint(conn):
                            queued += await self._apply(conn, item, handler, prefetched, now)
                    except Reject as exc:
                        _log_rejected(item, str(exc))
                    except Exception as exc:
                        _log_failed(item, exc)
        if queued:
            self.on_queued()

    async def _apply(
        self, conn: Any, item: InboundActivity, handler: Handler, prefetched: Any, now: datetime
    ) -> int:
        queued = 0
        for outbound in await handler.apply(conn, item, prefetched, now):
            queued += await enqueue(conn, outbound, self.new_id, now)
        return queued


def _answered_item(host: str, activity: dict[str, Any], now: datetime) -> InboundActivity | None:
    """The answer as an inbound activity, if it is one and speaks for the host that sent it."""
    activity_id, activity_type = activity.get("id"), activity.get("type")
    actor_uri = id_of(activity.get("actor"))
    if not (is_http_url(activity_id) and is_http_url(actor_uri) and isinstance(activity_type, str)):
        return None
    if host_of(actor_uri) != host or host_of(activity_id) != host:  # type: ignore[arg-type]
        return None
    return InboundActivity(0, activity_id, activity_type, actor_uri, activity, now)  # type: ignore[arg-type]


def _log_rejected(item: InboundActivity, reason: str) -> None:
    log.info(
        "activity rejected",
        extra={"activity": item.activity_id, "type": item.activity_type, "reason": reason},
    )


def _log_failed(item: InboundActivity, exc: Exception) -> None:
    log.warning(
        "applying a peer's answer failed",
        extra={"activity": item.activity_id, "error": repr(exc)},
    )
