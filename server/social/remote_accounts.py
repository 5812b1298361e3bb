"""Remote actors as accounts of the social domain (one id space with local accounts)."""

from __future__ import annotations

import functools
import json
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.db import upsert
from protocol.actors import RemoteActor
from protocol.as2 import host_of
from protocol.sanitize import sanitize_html
from server.identity.accounts import (
    BY_URI,
    Account,
    account_from_row,
    find_account,
    select_accounts,
)
from server.storage.ids import new_id
from server.storage.tables import accounts
from server.urls import Urls

_NAME_MAX = 100
# What an actor document sets on its account row (`fetched_at` aside: the actor directory
# records fetches).
_PROFILE_FIELDS = (
    "username",
    "domain",
    "url",
    "followers_url",
    "actor_type",
    "display_name",
    "note",
    "is_locked",
    "is_discoverable",
    "also_known_as",
    "moved_to_uri",
)


@functools.lru_cache(maxsize=1024)
def _sanitized_summary(summary_html: str) -> str:
    """Bios repeat on every activity from the same actor; sanitising one costs ~0.3 ms."""
    return sanitize_html(summary_html)


async def upsert_remote_account(
    conn: AsyncConnection, actor: RemoteActor, now: datetime
) -> Account:
    """Create or refresh the account row of a remote actor; its id never changes."""
    username = actor.preferred_username[:30]
    values = {
        "id": new_id(now),
        "username": username,
        "username_key": username.lower(),
        "domain": host_of(actor.actor_id),
        "uri": actor.actor_id,
        "url": actor.profile_url,
        "followers_url": actor.followers,
        "actor_type": actor.actor_type,
        "is_instance_actor": False,
        "display_name": actor.name[:_NAME_MAX],
        "note": _sanitized_summary(actor.summary_html),
        "is_locked": actor.manually_approves_followers,
        "is_discoverable": actor.discoverable,
        "is_indexable": False,
        "is_admin": False,
        "also_known_as": json.dumps(list(actor.also_known_as)),
        "moved_to_uri": actor.moved_to,
        "created_at": now,
        "fetched_at": now,
    }
    existing = await account_by_uri(conn, actor.actor_id)
    if existing is not None and all(
        getattr(existing, name) == values[name] for name in _PROFILE_FIELDS
    ):
        return existing  # most activities come from actors whose profile has not changed
    refreshed = [k for k in values if k not in ("id", "uri", "created_at", "is_admin")]
    await upsert(conn, accounts, values, keys=["uri"], update=refreshed)
    found = await account_by_uri(conn, actor.actor_id)
    assert found is not None
    return found


async def account_by_uri(conn: AsyncConnection, uri: str) -> Account | None:
    """A remote account by actor id."""
    row = (await conn.execute(BY_URI, {"uri": uri})).first()
    return account_from_row(row) if row else None


async def account_for_actor(conn: AsyncConnection, uri: str, local_base: str) -> Account | None:
    """The account an actor id names: a local one (by our URL scheme) or a known remote one."""
    prefix = f"{local_base}/users/"
    if uri.startswith(prefix):
        name = uri[len(prefix) :]
        return await find_account(conn, name) if name and "/" not in name else None
    return await account_by_uri(conn, uri)


async def mark_remote_account_deleted(
    conn: AsyncConnection, account: Account, now: datetime
) -> None:
    """A remote actor was deleted on its server: keep the row (ids stay stable), mark it."""
    await conn.execute(update(accounts).where(accounts.c.id == account.id).values(deleted_at=now))


async def known_account(conn: AsyncConnection, urls: Urls, handle: str) -> Account | None:
    """`name` or `name@host` among the accounts this node already has (no fetch)."""
    name, _, host = handle.partition("@")
    if not host or host.lower() == urls.domain:
        account = await find_account(conn, name)
    else:
        row = (
            await conn.execute(
                select_accounts()
                .where(
                    accounts.c.username_key == name.lower(),
                    accounts.c.domain == host.lower(),
                    accounts.c.deleted_at.is_(None),
                )
                .limit(1)
            )
        ).first()
        account = account_from_row(row) if row else None
    return None if account is None or account.is_instance_actor else account
