"""Stream events: what connected clients hear of once a transaction commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from server.storage.engine import record_event


@dataclass(frozen=True)
class StreamEvent:
    """Something streaming clients hear of, by stream name, once the transaction commits."""

    streams: tuple[str, ...]
    event: str  # update, notification, delete, status.update, conversation, kith:chat
    subject_id: int


def emit(
    conn: AsyncConnection, streams: list[str] | tuple[str, ...], event: str, subject: int
) -> None:
    if streams:
        record_event(conn, StreamEvent(tuple(streams), event, subject))
