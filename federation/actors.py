"""Remote actors: fetched once, stored with their keys, refreshed when stale or asked to."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from urllib.parse import urldefrag

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import UnitOfWork, upsert
from federation.fetch import Fetcher, FetchError
from federation.tables import remote_actors, remote_keys, utc
from protocol.actors import RemoteActor, parse_actor
from protocol.as2 import host_of
from protocol.errors import ProtocolError

log = logging.getLogger("kith.federation.actors")
REFRESH_AFTER = timedelta(days=1)
# Parsed actors kept in memory: every activity names its actor, and reading and parsing the
# stored document each time cost more than applying a small activity. A change made by another
# process sharing the database is seen here within the TTL.
_MEMORY_TTL_S = 60.0
_MEMORY_MAX = 10_000


class ActorUnavailable(Exception):
    """A remote actor could not be fetched or was invalid; `gone` when its server said 410."""

    def __init__(
        self,
        uri: str,
        reason: str,
        gone: bool = False,
        temporary: bool = False,
        missing: bool = False,
    ) -> None:
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason
        self.gone = gone
        self.temporary = temporary
        self.missing = missing


class ActorDirectory:
    """Looks up remote actors in the database, fetching them when unknown or stale."""

    def __init__(
        self,
        db: UnitOfWork,
        fetcher: Fetcher,
        clock: Callable[[], datetime],
        new_id: Callable[[datetime], int],
    ) -> None:
        self.db = db
        self.fetcher = fetcher
        self.clock = clock
        self.new_id = new_id
        self._memory: OrderedDict[str, tuple[RemoteActor, datetime, float]] = OrderedDict()

    async def get(self, uri: str, refresh: bool = False) -> RemoteActor:
        """The actor with this id; fetched if unknown, stale, or `refresh` is asked."""
        uri = urldefrag(uri).url
        if not refresh:
            found = self._remembered(uri)
            if found is None:
                async with self.db.read() as conn:
                    found = await stored_actor(conn, uri)
                if found is not None:
                    self._remember(uri, *found)
            if found is not None and self.clock() - found[1] < REFRESH_AFTER:
                return found[0]
        return await self.fetch(uri)

    def _remembered(self, uri: str) -> tuple[RemoteActor, datetime] | None:
        entry = self._memory.get(uri)
        if entry is None:
            return None
        if time.monotonic() - entry[2] > _MEMORY_TTL_S:
            del self._memory[uri]
            return None
        return entry[0], entry[1]

    def _remember(self, uri: str, actor: RemoteActor, fetched_at: datetime) -> None:
        self._memory[uri] = (actor, fetched_at, time.monotonic())
        if len(self._memory) > _MEMORY_MAX:
            self._memory.popitem(last=False)

    async def fetch(self, uri: str) -> RemoteActor:
        """Fetch, validate and store an actor document (and its keys)."""
        try:
            fetched = await self.fetcher.get_object(uri)
            actor = parse_actor(fetched.document)
        except FetchError as exc:
            if exc.is_gone:
                await self.mark_gone(uri)
            raise ActorUnavailable(
                uri,
                exc.reason,
                gone=exc.is_gone,
                temporary=exc.is_temporary,
                missing=exc.is_not_found,
            ) from None
        except ProtocolError as exc:
            raise ActorUnavailable(uri, str(exc)) from None
        now = self.clock()
        async with self.db.transaction() as conn:
            await self.store(conn, actor, fetched.document, now)
        self._remember(actor.actor_id, actor, now)
        return actor

    async def resolve_handle(self, username: str, host: str) -> RemoteActor:
        """`username@host` via WebFinger, checked both ways as Mastodon does."""
        try:
            uri = await self.fetcher.webfinger(username, host)
        except FetchError as exc:
            raise ActorUnavailable(
                f"{username}@{host}", exc.reason, temporary=exc.is_temporary
            ) from None
        actor = await self.get(uri)
        if host_of(actor.actor_id) != host.lower():
            # The actor lives elsewhere: its own server must vouch for the handle.
            canonical = await self.fetcher.webfinger(actor.preferred_username, host_of(uri))
            if canonical != actor.actor_id:
                raise ActorUnavailable(uri, "WebFinger does not point back at the actor")
        return actor

    async def store(
        self, conn: AsyncConnection, actor: RemoteActor, document: dict, now: datetime
    ) -> None:
        """Write an actor and its keys (in the caller's transaction)."""
        self._memory.pop(actor.actor_id, None)
        await upsert(
            conn,
            remote_actors,
            {
                "id": self.new_id(now),
                "uri": actor.actor_id,
                "host": host_of(actor.actor_id),
                "inbox_url": actor.inbox,
                "shared_inbox_url": actor.shared_inbox,
                "document": json.dumps(document),
                "fetched_at": now,
                "gone_at": None,
            },
            keys=["uri"],
            update=["host", "inbox_url", "shared_inbox_url", "document", "fetched_at", "gone_at"],
        )
        for key in actor.keys:
            await upsert(
                conn,
                remote_keys,
                {
                    "key_id": key.key_id,
                    "owner_uri": actor.actor_id,
                    "algorithm": key.algorithm,
                    "public_key": key.public_key,
                    "fetched_at": now,
                },
                keys=["key_id"],
            )

    async def mark_gone(self, uri: str) -> None:
        """Remember that the actor's server answered 410."""
        self._memory.pop(uri, None)
        async with self.db.transaction() as conn:
            await conn.execute(
                update(remote_actors).where(remote_actors.c.uri == uri).values(gone_at=self.clock())
            )


async def stored_actor(conn: AsyncConnection, uri: str) -> tuple[RemoteActor, datetime] | None:
    """A stored actor and when it was fetched, or None."""
    row = (
        await conn.execute(
            select(remote_actors.c.document, remote_actors.c.fetched_at).where(
                remote_actors.c.uri == uri, remote_actors.c.gone_at.is_(None)
            )
        )
    ).first()
    if row is None:
        return None
    return parse_actor(json.loads(row.document)), utc(row.fetched_at)  # type: ignore[return-value]


async def inboxes_for(
    conn: AsyncConnection, actor_uris: Iterable[str], gone_too: bool = False
) -> dict[str, str]:
    """Each known actor's delivery inbox, the shared inbox when it has one; of actors whose
    server said they are gone only if `gone_too` (a Delete still goes where the post went)."""
    uris = list(dict.fromkeys(actor_uris))
    if not uris:
        return {}
    if len(uris) == 1 and not gone_too:  # a direct message, a payment: the common case
        rows = await conn.execute(_INBOX_OF_ONE, {"uri": uris[0]})
    else:
        query = _INBOXES.where(remote_actors.c.uri.in_(uris))
        if not gone_too:
            query = query.where(remote_actors.c.gone_at.is_(None))
        rows = await conn.execute(query)
    return {row.uri: row.shared_inbox_url or row.inbox_url for row in rows}


_INBOXES = select(remote_actors.c.uri, remote_actors.c.inbox_url, remote_actors.c.shared_inbox_url)
# `kith_direct`: run on SQLite without SQLAlchemy's execution machinery (server/storage/direct.py).
_INBOX_OF_ONE = _INBOXES.where(
    remote_actors.c.uri == bindparam("uri"), remote_actors.c.gone_at.is_(None)
).execution_options(kith_direct=True)
