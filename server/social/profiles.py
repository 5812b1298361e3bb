"""Local profile changes that federate: Update(Person) and Delete(Person)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.dispatch import PRIORITY_INTERACTIVE, Outbound
from protocol.activities import render_activity
from protocol.addressing import Audience
from protocol.vocab import PUBLIC
from server.identity.accounts import Account, get_account
from server.social.actors import local_actor_document
from server.social.statuses import remote_follower_uris
from server.storage.ids import new_id
from server.storage.tables import accounts, follows, statuses
from server.urls import Urls

DISPLAY_NAME_MAX = 100
NOTE_MAX = 500
# Mastodon's limits on profile fields (metadata): four pairs of 255 characters each.
FIELDS_MAX = 4
FIELD_NAME_MAX = 255
FIELD_VALUE_MAX = 255


async def known_remote_actors(conn: AsyncConnection, account_id: int) -> list[str]:
    """Every remote actor this account follows or is followed by (who must hear of changes)."""
    rows = await conn.execute(
        select(accounts.c.uri)
        .join(
            follows,
            or_(
                follows.c.account_id == accounts.c.id, follows.c.target_account_id == accounts.c.id
            ),
        )
        .where(
            or_(follows.c.account_id == account_id, follows.c.target_account_id == account_id),
            accounts.c.domain != "",
        )
    )
    return list(dict.fromkeys(row.uri for row in rows if row.uri))


async def update_profile(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    now: datetime,
    display_name: str | None = None,
    note: str | None = None,
    locked: bool | None = None,
    bot: bool | None = None,
    discoverable: bool | None = None,
    indexable: bool | None = None,
    fields: list[tuple[str, str]] | None = None,
    avatar_file: str | None = None,
    remove_avatar: bool = False,
) -> tuple[Account, list[Outbound]]:
    """Change a local profile; followers' servers get Update(Person) with the new document.

    `fields` replaces all profile fields (at most FIELDS_MAX; the caller checks lengths).
    `avatar_file` is a profile picture already written under media/ (server/media.py); the
    one it replaces is deleted by the sweep of files nothing names.
    """
    changes: dict[str, object] = {}
    if avatar_file is not None or remove_avatar:
        changes["avatar_file"] = avatar_file
    if indexable is not None:
        changes["is_indexable"] = indexable
    if fields is not None:
        kept = [[name, value] for name, value in fields[:FIELDS_MAX] if name or value]
        changes["profile_fields"] = json.dumps(kept) if kept else None
    if display_name is not None:
        changes["display_name"] = display_name[:DISPLAY_NAME_MAX]
    if note is not None:
        changes["note"] = note[:NOTE_MAX]
    if locked is not None:
        changes["is_locked"] = locked
    if bot is not None:
        changes["actor_type"] = "Service" if bot else "Person"
    if discoverable is not None:
        changes["is_discoverable"] = discoverable
    if changes:
        await conn.execute(update(accounts).where(accounts.c.id == account.id).values(**changes))
    updated = await get_account(conn, account.id)
    assert updated is not None
    document = await local_actor_document(conn, urls, updated)
    document.pop("@context")
    audience = Audience(to=(PUBLIC,), cc=(urls.followers(updated) or "",))
    activity = render_activity(
        "Update", urls.activity(new_id(now)), urls.actor(updated), document, audience=audience
    )
    recipients = tuple(await remote_follower_uris(conn, account.id))
    return updated, [Outbound(activity, urls.actor(updated), recipients, PRIORITY_INTERACTIVE)]


async def delete_account(
    conn: AsyncConnection, urls: Urls, account: Account, now: datetime
) -> list[Outbound]:
    """Delete a local account: posts and follows go, the name stays taken, peers get Delete."""
    recipients = tuple(await known_remote_actors(conn, account.id))
    await conn.execute(delete(statuses).where(statuses.c.account_id == account.id))
    await conn.execute(
        delete(follows).where(
            or_(follows.c.account_id == account.id, follows.c.target_account_id == account.id)
        )
    )
    await conn.execute(update(accounts).where(accounts.c.id == account.id).values(deleted_at=now))
    actor = urls.actor(account)
    audience = Audience(to=(PUBLIC,), cc=())
    activity = render_activity("Delete", f"{actor}#delete", actor, actor, audience=audience)
    return [Outbound(activity, actor, recipients, PRIORITY_INTERACTIVE)]


async def set_aliases(
    conn: AsyncConnection, urls: Urls, account: Account, aliases: list[str], now: datetime
) -> tuple[Account, list[Outbound]]:
    """Name the accounts this one also is (`alsoKnownAs`), so one of them may move here."""
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account.id)
        .values(also_known_as=json.dumps(list(dict.fromkeys(aliases))))
    )
    return await update_profile(conn, urls, account, now)


async def move_account(
    conn: AsyncConnection, urls: Urls, account: Account, target: Account, now: datetime
) -> list[Outbound]:
    """Move to another account: followers' servers move their follows there (Mastodon's Move).

    The target must already list this account in its `alsoKnownAs`; receivers check that.
    """
    if target.id == account.id or target.is_deleted:
        raise ValueError("an account moves to another, live account")
    await conn.execute(
        update(accounts).where(accounts.c.id == account.id).values(moved_to_uri=urls.actor(target))
    )
    actor = urls.actor(account)
    audience = Audience(to=(urls.followers(account) or "",), cc=())
    activity = render_activity(
        "Move",
        urls.activity(new_id(now)),
        actor,
        actor,
        audience=audience,
        target=urls.actor(target),
    )
    recipients = tuple(await remote_follower_uris(conn, account.id))
    return [Outbound(activity, actor, recipients, PRIORITY_INTERACTIVE)]
