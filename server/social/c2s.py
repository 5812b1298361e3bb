"""ActivityPub client-to-server: an activity a user posts to their outbox, as a local action.

Each supported activity runs the same social function the Mastodon API uses, so it is stored
and federated exactly as if the user had acted through any other client. Remote actors and
objects the activity names are resolved before (they may need fetching), and passed in.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.dispatch import Outbound
from protocol.activities import render_activity, render_note
from protocol.addressing import VISIBILITIES, visibility_of
from protocol.as2 import as_list, id_of, ids_of, text_of
from protocol.sanitize import html_to_text
from protocol.vocab import PUBLIC_ALIASES
from server.identity.accounts import Account, get_account
from server.social import graph, interactions, posting
from server.social.collections import PAGE_SIZE, Page, as_activities
from server.social.graph import InvalidAction
from server.social.remote_accounts import account_for_actor
from server.social.statuses import (
    Status,
    boost_by,
    note_document,
    status_by_id,
    status_by_uri,
    statuses_of,
)
from server.social.visibility import can_see
from server.storage.ids import new_id
from server.storage.tables import blocks, favourites, follows, statuses
from server.urls import Urls

OBJECT_TYPES = frozenset({"Note", "Article"})
ACTIVITY_TYPES = frozenset(
    {"Create", "Update", "Delete", "Follow", "Like", "Announce", "Undo", "Block"}
)
UNDOABLE = ("Follow", "Like", "Announce", "Block")
# Each recipient or mention may cost a remote fetch before the post is made.
RECIPIENTS_MAX = 100
_SUMMARY_MAX = 500
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_ADDRESSING = ("to", "cc", "bto", "bcc", "audience")


class UnsupportedActivity(ValueError):
    """An activity this server cannot perform for a client; the message says why."""


@dataclass(frozen=True)
class Resolved:
    """What the activity refers to, looked up (and fetched) before the transaction."""

    accounts: dict[str, Account]  # actor id → account (targets, recipients and mentions)
    statuses: dict[str, Status]  # object id → status


def wrap(document: dict[str, Any], actor_uri: str) -> dict[str, Any]:
    """A bare object becomes the object of a Create (ActivityPub §6.2.1); `actor` is filled in."""
    if document.get("type") in OBJECT_TYPES:
        wrapped = {"type": "Create", "object": document}
        for key in _ADDRESSING:
            if key in document:
                wrapped[key] = document[key]
        document = wrapped
    if document.get("type") not in ACTIVITY_TYPES:
        raise UnsupportedActivity(f"unsupported activity type {document.get('type')!r}")
    if document.get("actor") not in (None, actor_uri):
        raise UnsupportedActivity("actor must be the token's user")
    note = document.get("object")
    if document["type"] == "Create" and isinstance(note, dict):
        if note.get("attributedTo") not in (None, actor_uri):
            raise UnsupportedActivity("attributedTo must be the token's user")
        if any(note.get(key) or document.get(key) for key in ("bto", "bcc")):
            # Blind recipients would show in the post's addressing and mentions here.
            raise UnsupportedActivity("bto and bcc are not supported; address with to and cc")
        if note.get("attachment"):
            raise UnsupportedActivity("attachments are not supported yet")
    return {**document, "actor": actor_uri}


def addressed_actors(activity: dict[str, Any], followers: str) -> list[str]:
    """Who a Create is addressed to, other than the public and the author's followers."""
    if activity["type"] != "Create" or not isinstance(activity.get("object"), dict):
        return []
    to, cc = _addressing(activity)
    return [uri for uri in dict.fromkeys(to + cc) if uri not in PUBLIC_ALIASES | {followers}]


def referenced_actors(activity: dict[str, Any], followers: str) -> list[str]:
    """Actor ids to resolve: the object of Follow/Block; recipients and mentions of a Create."""
    kind = activity["type"]
    if kind in ("Follow", "Block"):
        return [i for i in [id_of(activity.get("object"))] if i]
    if kind == "Create" and isinstance(activity.get("object"), dict):
        found = list(dict.fromkeys(_mentions(activity) + addressed_actors(activity, followers)))
        if len(found) > RECIPIENTS_MAX:
            raise UnsupportedActivity(f"at most {RECIPIENTS_MAX} recipients and mentions")
        return found
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
    visible = await _visible(conn, account, resolved)
    return await _PERFORMERS[activity["type"]](conn, urls, account, activity, visible, now)


async def _visible(conn: AsyncConnection, account: Account, resolved: Resolved) -> Resolved:
    """Only what the user may see: anything else answers as unknown, not as forbidden, so a
    client cannot learn that a private post exists (GHSA-gwhw-gcjx-72v8)."""
    seen = {
        uri: status
        for uri, status in resolved.statuses.items()
        if await can_see(conn, account, status)
    }
    return Resolved(resolved.accounts, seen)


Performer = Callable[
    [AsyncConnection, Urls, Account, dict[str, Any], Resolved, datetime],
    Awaitable[tuple[dict[str, Any], list[Outbound]]],
]


async def _create(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[dict[str, Any], list[Outbound]]:
    note = activity.get("object")
    if not isinstance(note, dict) or note.get("type") not in OBJECT_TYPES:
        raise UnsupportedActivity("Create needs a Note object")
    parent_uri = id_of(note.get("inReplyTo"))
    parent = resolved.statuses.get(parent_uri or "")
    if parent_uri and parent is None:
        raise UnsupportedActivity("the object replied to is unknown")
    followers = urls.followers(account) or ""
    recipients = referenced_actors(activity, followers)
    unknown = [uri for uri in recipients if uri not in resolved.accounts]
    if unknown:
        raise UnsupportedActivity(f"{unknown[0]} is not an actor this node can address")
    to, cc = _addressing(activity)
    visibility = visibility_of(to, cc, followers, recipients)
    text, language = _text_of(note)
    status, outbound = await posting.publish_status(
        conn,
        urls,
        account,
        text,
        now,
        # Everyone addressed is mentioned, so Mastodon's "limited" becomes "direct".
        visibility if visibility in VISIBILITIES else "direct",
        [resolved.accounts[uri] for uri in recipients],
        parent,
        *_warning(note),
        language=language,
    )
    return await create_activity(conn, urls, account, status), outbound


async def create_activity(
    conn: AsyncConnection, urls: Urls, account: Account, status: Status
) -> dict[str, Any]:
    """The Create that published a local post, as it federated."""
    note = await note_document(conn, status, urls)
    return render_activity(
        "Create",
        f"{status.uri}/activity",
        urls.actor(account),
        render_note(note),
        audience=note.audience,
        published=status.created_at,
    )


async def _update(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[dict[str, Any], list[Outbound]]:
    status = _own(resolved, id_of(activity.get("object")), account)
    text, _ = _text_of(activity["object"])
    outbound = await posting.edit_status(
        conn, urls, account, status, text, now, *_warning(activity["object"])
    )
    return outbound[0].activity, outbound


async def _delete(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[dict[str, Any], list[Outbound]]:
    status = _own(resolved, id_of(activity.get("object")), account)
    outbound = await posting.delete_status(conn, urls, account, status, now)
    return outbound[0].activity, outbound


async def _follow_or_block(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[dict[str, Any], list[Outbound]]:
    kind = activity["type"]
    target = _account(resolved, id_of(activity.get("object")))
    act = graph.follow if kind == "Follow" else graph.block
    outbound = await act(conn, urls, account, target, now)
    uri = await _edge_uri(conn, follows if kind == "Follow" else blocks, account, target)
    return render_activity(kind, uri, urls.actor(account), urls.actor(target)), outbound


async def _like(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[dict[str, Any], list[Outbound]]:
    status = _status(resolved, id_of(activity.get("object")))
    outbound = await interactions.like(conn, urls, account, status, now)
    uri = (
        await conn.execute(
            select(favourites.c.uri).where(
                favourites.c.account_id == account.id, favourites.c.status_id == status.id
            )
        )
    ).scalar_one()
    return render_activity("Like", uri, urls.actor(account), status.uri), outbound


async def _announce(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[dict[str, Any], list[Outbound]]:
    status = _status(resolved, id_of(activity.get("object")))
    boost, outbound = await interactions.boost(conn, urls, account, status, now)
    if outbound:
        return outbound[0].activity, outbound
    return render_activity("Announce", boost.uri, urls.actor(account), status.uri), outbound


async def _undo(
    conn: AsyncConnection,
    urls: Urls,
    account: Account,
    activity: dict[str, Any],
    resolved: Resolved,
    now: datetime,
) -> tuple[dict[str, Any], list[Outbound]]:
    """Undo one's own Follow, Like, Announce or Block, named by id or embedded."""
    kind, undone_id, target = await _undone(conn, urls, account, activity.get("object"))
    if kind in ("Follow", "Block"):
        act = graph.unfollow if kind == "Follow" else graph.unblock
        outbound = await act(conn, urls, account, target, now)  # type: ignore[arg-type]
        target_uri = urls.actor(target)  # type: ignore[arg-type]
    else:
        act = interactions.unlike if kind == "Like" else interactions.unboost
        outbound = await act(conn, urls, account, target, now)  # type: ignore[arg-type]
        target_uri = target.uri
    if outbound:
        return outbound[0].activity, outbound
    # A local target: nothing federates, but the client still gets the Undo it caused.
    embedded = {"id": undone_id, "type": kind, "actor": urls.actor(account), "object": target_uri}
    return render_activity("Undo", urls.activity(new_id(now)), urls.actor(account), embedded), []


async def _undone(
    conn: AsyncConnection, urls: Urls, account: Account, target: Any
) -> tuple[str, str | None, Account | Status]:
    """What an Undo takes back: (its type, its id, the account or status it was about).

    By id, it must be one of the user's own activities; an embedded activity without an id
    names it by type and object (the user's follow of, block of, like or boost of that)."""
    undone_id = id_of(target)
    if undone_id is not None:
        found = await _own_activity(conn, account, undone_id)
        if found is None:
            raise UnsupportedActivity("the id names no Follow, Like, Announce or Block of yours")
        return found
    kind = target.get("type") if isinstance(target, dict) else None
    if kind not in UNDOABLE:
        raise UnsupportedActivity("Undo needs one of your Follow, Like, Announce or Block")
    about = id_of(target.get("object")) or ""
    if kind in ("Follow", "Block"):
        other = await account_for_actor(conn, about, urls.base_url)
        exists = graph.follow_between if kind == "Follow" else graph.block_between
        if other is not None and await exists(conn, account.id, other.id) is not None:
            table = follows if kind == "Follow" else blocks
            return kind, await _edge(conn, table, account, other), other
    else:
        status = await status_by_uri(conn, about)
        if status is not None and await _has_interaction(conn, kind, account, status):
            return kind, None, status
    raise UnsupportedActivity(f"there is no {kind} of yours for that object")


async def _own_activity(
    conn: AsyncConnection, account: Account, uri: str
) -> tuple[str, str, Account | Status] | None:
    """One of the user's follows, blocks, likes or boosts, by the activity's id."""
    for kind, table in (("Follow", follows), ("Block", blocks)):
        row = await conn.execute(
            select(table.c.target_account_id).where(
                table.c.account_id == account.id, table.c.uri == uri
            )
        )
        target_id = row.scalar_one_or_none()
        if target_id is not None:
            return kind, uri, await _account_by_id(conn, target_id)
    liked = await conn.execute(
        select(favourites.c.status_id).where(
            favourites.c.account_id == account.id, favourites.c.uri == uri
        )
    )
    status_id = liked.scalar_one_or_none()
    if status_id is not None:
        return "Like", uri, await _status_by_id(conn, status_id)
    boost = await status_by_uri(conn, uri)
    if boost is not None and boost.account_id == account.id and boost.reblog_of_id is not None:
        return "Announce", uri, await _status_by_id(conn, boost.reblog_of_id)
    return None


async def _has_interaction(
    conn: AsyncConnection, kind: str, account: Account, status: Status
) -> bool:
    if kind == "Announce":
        return await boost_by(conn, account.id, status.id) is not None
    return await interactions.has_favourite(conn, account.id, status.id)


_PERFORMERS: dict[str, Performer] = {
    "Create": _create,
    "Update": _update,
    "Delete": _delete,
    "Follow": _follow_or_block,
    "Block": _follow_or_block,
    "Like": _like,
    "Announce": _announce,
    "Undo": _undo,
}


async def count_owner_outbox(conn: AsyncConnection, account: Account) -> int:
    """Everything the user published, whatever its visibility (their own view)."""
    query = select(func.count()).select_from(statuses).where(statuses.c.account_id == account.id)
    return int((await conn.execute(query)).scalar_one())


async def owner_outbox_page(
    conn: AsyncConnection, urls: Urls, account: Account, max_id: int | None
) -> Page:
    """The outbox as its owner sees it: followers-only and direct posts too, embedded."""
    found = await statuses_of(conn, account.id, VISIBILITIES, PAGE_SIZE, max_id)
    items = await as_activities(conn, urls, found)
    return Page(items, found[-1].id if len(found) == PAGE_SIZE else None)


def _addressing(activity: dict[str, Any]) -> tuple[list[str], list[str]]:
    """`to` and `cc` of the activity and of its object together (clients set either)."""
    note = activity.get("object") if isinstance(activity.get("object"), dict) else {}
    to = ids_of(activity.get("to")) + ids_of(note.get("to"))  # type: ignore[union-attr]
    cc = ids_of(activity.get("cc")) + ids_of(note.get("cc"))  # type: ignore[union-attr]
    return list(dict.fromkeys(to)), list(dict.fromkeys(cc))


def _mentions(activity: dict[str, Any]) -> list[str]:
    return [
        href
        for tag in as_list(activity["object"].get("tag"))
        if isinstance(tag, dict) and tag.get("type") == "Mention"
        for href in [id_of(tag.get("href"))]
        if href
    ]


def _text_of(note: dict[str, Any]) -> tuple[str, str | None]:
    """What the user wrote, and its language: the plain-text `source` if given, else the text
    of the (sanitised) HTML content. Our own rendering then links mentions and hashtags, as for
    a post from any other client, so no client HTML is stored or federated."""
    language = None
    content = note.get("content")
    content_map = note.get("contentMap")
    if isinstance(content_map, dict) and content_map:
        language, mapped = next(iter(content_map.items()))
        content = content if isinstance(content, str) else mapped
        if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
            language = None
    source = note.get("source")
    if (
        isinstance(source, dict)
        and isinstance(source.get("content"), str)
        and source.get("mediaType", "text/plain") in ("text/plain", "text/markdown")
    ):
        return source["content"], language
    if not isinstance(content, str) or not content.strip():
        raise UnsupportedActivity("a Note needs content")
    return html_to_text(content), language


def _warning(note: dict[str, Any]) -> tuple[str, bool]:
    summary = text_of(note.get("summary"), _SUMMARY_MAX)
    return summary, note.get("sensitive") is True or bool(summary)


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


async def _edge(conn: AsyncConnection, table: Any, account: Account, target: Account) -> Any:
    """The id (`uri`) of the user's follow or block of `target`; None when there is none."""
    row = await conn.execute(
        select(table.c.uri).where(
            table.c.account_id == account.id, table.c.target_account_id == target.id
        )
    )
    return row.scalar_one_or_none()


async def _edge_uri(conn: AsyncConnection, table: Any, account: Account, target: Account) -> str:
    uri = await _edge(conn, table, account, target)
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
