"""ActivityPub client-to-server: an activity a user posts to their outbox, as a local action.

Each supported activity runs the same social function the Mastodon API uses, so it is stored
and federated exactly as if the user had acted through any other client. Remote actors and
objects the activity names are resolved before (they may need fetching), and passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.dispatch import Outbound
from protocol.activities import render_activity, render_note
from protocol.as2 import as_list, id_of, ids_of, text_of
from protocol.sanitize import html_to_text
from protocol.vocab import PUBLIC
from server.identity.accounts import Account, get_account
from server.social import graph, interactions, posting
from server.social.graph import InvalidAction
from server.social.statuses import Status, note_document, status_by_id, status_by_uri
from server.storage.ids import new_id
from server.storage.tables import blocks, favourites, follows, statuses
from server.urls import Urls

OBJECT_TYPES = frozenset({"Note", "Article"})
ACTIVITY_TYPES = frozenset(
    {"Create", "Update", "Delete", "Follow", "Like", "Announce", "Undo", "Block"}
)
_SUMMARY_MAX = 500


class UnsupportedActivity(ValueError):
    """An activity this server cannot perform for a client; the message says why."""


@dataclass(frozen=True)
class Resolved:
    """What the activity refers to, looked up (and fetched) before the transaction."""

    accounts: dict[str, Account]  # actor id → account (targets and mentions)
    statuses: dict[str, Status]  # object id → status


def wrap(document: dict[str, Any], actor_uri: str) -> dict[str, Any]:
    """A bare object becomes the object of a Create (ActivityPub §6.2.1)."""
    if document.get("type") in OBJECT_TYPES:
        if document.get("attributedTo") not in (None, actor_uri):
            raise UnsupportedActivity("attributedTo must be the token's user")
        wrapped = {"type": "Create", "object": document}
        for key in ("to", "cc", "bto", "bcc", "audience"):
            if key in document:
                wrapped[key] = document[key]
        document = wrapped
    if document.get("type") not in ACTIVITY_TYPES:
        raise UnsupportedActivity(f"unsupported activity type {document.get('type')!r}")
    if document.get("actor") not in (None, actor_uri):
        raise UnsupportedActivity("actor must be the token's user")
    return {**document, "actor": actor_uri}


def referenced_actors(activity: dict[str, Any]) -> list[str]:
    """Actor ids to resolve: the object of Follow/Block, mentions of a Create."""
    kind = activity["type"]
    if kind in ("Follow", "Block"):
        return [i for i in [id_of(activity.get("object"))] if i]
    if kind == "Create" and isinstance(activity.get("object"), dict):
        return [
            href
            for tag in as_list(activity["object"].get("tag"))
            if isinstance(tag, dict) and tag.get("type") == "Mention"
            for href in [id_of(tag.get("href"))]
            if href
        ]
    return []


def referenced_objects(activity: dict[str, Any]) -> list[str]:
    """Object ids to resolve: what is liked, boosted, replied to, edited or deleted."""
    kind, target = activity["type"], activity.get("object")
    if kind in ("Like", "Announce", "Delete"):
        return [i for i in [id_of(target)] if i]
    if kind in ("Create", "Update") and isinstance(target, dict):
        wanted = [id_of(target.get("inReplyTo"))] if kind == "Create" else [id_of(target)]
        return [i for i in wanted if i]
    return []


async def perform(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[dict[str, Any], list[Outbound]]:
    """Do what the activity asks; returns the activity as this node published it."""
    actor = urls.actor(account)
    kind = activity["type"]
    if kind == "Create":
        status, outbound = await _create(conn, urls, account, activity, resolved, now)
        return await _create_activity(conn, urls, account, status), outbound
    if kind == "Update":
        status = _own(resolved, id_of(activity.get("object")), account)
        note = activity["object"]
        text = _text_of(note)
        outbound = await posting.edit_status(
            conn, urls, account, status, text, now, *_warning(note)
        )
        return outbound[0].activity, outbound
    if kind == "Delete":
        status = _own(resolved, id_of(activity.get("object")), account)
        outbound = await posting.delete_status(conn, urls, account, status, now)
        return outbound[0].activity, outbound
    if kind in ("Follow", "Block"):
        target = _account(resolved, id_of(activity.get("object")))
        act = graph.follow if kind == "Follow" else graph.block
        outbound = await act(conn, urls, account, target, now)
        uri = await _edge_uri(conn, follows if kind == "Follow" else blocks, account, target)
        return render_activity(kind, uri, actor, urls.actor(target)), outbound
    if kind == "Like":
        status = _status(resolved, id_of(activity.get("object")))
        outbound = await interactions.like(conn, urls, account, status, now)
        uri = (
            await conn.execute(
                select(favourites.c.uri).where(
                    favourites.c.account_id == account.id, favourites.c.status_id == status.id
                )
            )
        ).scalar_one()
        return render_activity("Like", uri, actor, status.uri), outbound
    if kind == "Announce":
        status = _status(resolved, id_of(activity.get("object")))
        boost, outbound = await interactions.boost(conn, urls, account, status, now)
        audience = outbound[0].activity if outbound else None
        return audience or render_activity("Announce", boost.uri, actor, status.uri), outbound
    return await _undo(conn, urls, account, activity, now)


async def _create(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[Status, list[Outbound]]:
    note = activity.get("object")
    if not isinstance(note, dict) or note.get("type") not in OBJECT_TYPES:
        raise UnsupportedActivity("Create needs a Note object")
    parent_uri = id_of(note.get("inReplyTo"))
    parent = resolved.statuses.get(parent_uri or "")
    if parent_uri and parent is None:
        raise UnsupportedActivity("the object replied to is unknown")
    mentioned = [
        resolved.accounts[h] for h in referenced_actors(activity) if h in resolved.accounts
    ]
    return await posting.publish_status(
        conn,
        urls,
        account,
        _text_of(note),
        now,
        _visibility(activity, note, urls.followers(account) or ""),
        mentioned,
        parent,
        *_warning(note),
    )


async def _create_activity(
    conn: AsyncConnection, urls: Urls, account: Account, status: Status
) -> dict[str, Any]:
    note = await note_document(conn, status, urls)
    return render_activity(
        "Create",
        f"{status.uri}/activity",
        urls.actor(account),
        render_note(note),
        audience=note.audience,
        published=status.created_at,
    )


async def _undo(
    conn: AsyncConnection, urls: Urls, account: Account, activity: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], list[Outbound]]:
    """Undo one's own Follow, Like, Announce or Block, named by id or embedded."""
    target = activity.get("object")
    undone_id = id_of(target)
    embedded = target if isinstance(target, dict) else {}
    kind = embedded.get("type") or await _kind_of(conn, account, undone_id)
    outbound: list[Outbound]
    if kind in ("Follow", "Block"):
        table = follows if kind == "Follow" else blocks
        row = (
            await conn.execute(
                select(table.c.target_account_id).where(
                    table.c.account_id == account.id,
                    table.c.uri == undone_id if undone_id else table.c.id.is_(None),
                )
            )
        ).first()
        if row is None:
            raise UnsupportedActivity(f"there is no {kind} of yours with that id")
        other = await _account_by_id(conn, row.target_account_id)
        act = graph.unfollow if kind == "Follow" else graph.unblock
        outbound = await act(conn, urls, account, other, now)
    elif kind == "Like":
        row = (
            await conn.execute(
                select(favourites.c.status_id).where(
                    favourites.c.account_id == account.id, favourites.c.uri == undone_id
                )
            )
        ).first()
        if row is None:
            raise UnsupportedActivity("there is no Like of yours with that id")
        status = await _status_by_id(conn, row.status_id)
        outbound = await interactions.unlike(conn, urls, account, status, now)
    elif kind == "Announce":
        boost = await status_by_uri(conn, undone_id or "")
        if boost is None or boost.account_id != account.id or boost.reblog_of_id is None:
            raise UnsupportedActivity("there is no Announce of yours with that id")
        original = await _status_by_id(conn, boost.reblog_of_id)
        outbound = await interactions.unboost(conn, urls, account, original, now)
    else:
        raise UnsupportedActivity("Undo needs one of your Follow, Like, Announce or Block")
    if outbound:
        return outbound[0].activity, outbound
    undo = render_activity("Undo", urls.activity(new_id(now)), urls.actor(account), undone_id)
    return undo, outbound


async def _kind_of(conn: AsyncConnection, account: Account, uri: str | None) -> str | None:
    """Which of the user's own activities an id names."""
    if not uri:
        return None
    for kind, table in (("Follow", follows), ("Block", blocks), ("Like", favourites)):
        row = await conn.execute(
            select(table.c.id).where(table.c.account_id == account.id, table.c.uri == uri)
        )
        if row.first() is not None:
            return kind
    boost = await conn.execute(
        select(statuses.c.id).where(
            statuses.c.uri == uri,
            statuses.c.account_id == account.id,
            statuses.c.reblog_of_id.is_not(None),
        )
    )
    return "Announce" if boost.first() is not None else None


def _text_of(note: dict[str, Any]) -> str:
    """What the user wrote: the plain-text `source` if given, else the content's text."""
    source = note.get("source")
    if (
        isinstance(source, dict)
        and isinstance(source.get("content"), str)
        and source.get("mediaType", "text/plain") in ("text/plain", "text/markdown")
    ):
        return source["content"]
    content = note.get("content")
    if not isinstance(content, str) or not content.strip():
        raise UnsupportedActivity("a Note needs content")
    return html_to_text(content)


def _warning(note: dict[str, Any]) -> tuple[str, bool]:
    summary = text_of(note.get("summary"), _SUMMARY_MAX)
    return summary, note.get("sensitive") is True or bool(summary)


def _visibility(activity: dict[str, Any], note: dict[str, Any], followers: str) -> str:
    """Mastodon's visibilities from the addressing (the object's, else the activity's)."""
    addressing = note if ("to" in note or "cc" in note) else activity
    to, cc = ids_of(addressing.get("to")), ids_of(addressing.get("cc"))
    if PUBLIC in to or "as:Public" in to or "Public" in to:
        return "public"
    if PUBLIC in cc or "as:Public" in cc or "Public" in cc:
        return "unlisted"
    if followers in to or followers in cc:
        return "private"
    return "direct"


def _own(resolved: Resolved, uri: str | None, account: Account) -> Status:
    status = _status(resolved, uri)
    if status.account_id != account.id or status.reblog_of_id is not None:
        raise InvalidAction("only the author can change or delete a post")
    return status


def _status(resolved: Resolved, uri: str | None) -> Status:
    status = resolved.statuses.get(uri or "")
    if status is None:
        raise UnsupportedActivity("the object is unknown")
    return status


def _account(resolved: Resolved, uri: str | None) -> Account:
    account = resolved.accounts.get(uri or "")
    if account is None:
        raise UnsupportedActivity("the actor is unknown")
    return account


async def _edge_uri(conn: AsyncConnection, table: Any, account: Account, target: Account) -> str:
    row = await conn.execute(
        select(table.c.uri).where(
            table.c.account_id == account.id, table.c.target_account_id == target.id
        )
    )
    uri = row.scalar_one_or_none()
    if uri is None:
        raise InvalidAction("nothing was done")
    return uri


async def _account_by_id(conn: AsyncConnection, account_id: int) -> Account:
    found = await get_account(conn, account_id)
    assert found is not None
    return found


async def _status_by_id(conn: AsyncConnection, status_id: int) -> Status:
    found = await status_by_id(conn, status_id)
    assert found is not None
    return found
