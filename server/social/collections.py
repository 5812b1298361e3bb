"""What an actor's public collections hold: its outbox, followers and following."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.activities import render_activity, render_note, without_context
from protocol.addressing import Audience
from protocol.vocab import PUBLIC
from server.identity.accounts import Account, account_from_row, select_accounts
from server.social import pins
from server.social.statuses import Status, author_of, note_document, status_by_id, statuses_of
from server.storage.tables import accounts, follows, statuses
from server.urls import Urls

PAGE_SIZE = 20
_LISTED = ("public", "unlisted")


@dataclass(frozen=True)
class Page:
    """Items newest first, and the cursor for the next page (None on the last)."""

    items: list[Any]
    next_max_id: int | None


Counter = Callable[[AsyncConnection, Account], Awaitable[int]]
Pager = Callable[[AsyncConnection, Urls, Account, int | None], Awaitable[Page]]


async def count_outbox(conn: AsyncConnection, account: Account) -> int:
    query = (
        select(func.count())
        .select_from(statuses)
        .where(statuses.c.account_id == account.id, statuses.c.visibility.in_(_LISTED))
    )
    return int((await conn.execute(query)).scalar_one())


async def outbox_page(
    conn: AsyncConnection, urls: Urls, account: Account, max_id: int | None
) -> Page:
    """Public and unlisted posts as Create activities, boosts as Announces."""
    found = await statuses_of(conn, account.id, _LISTED, PAGE_SIZE, max_id)
    items = await as_activities(conn, urls, found)
    next_max_id = found[-1].id if len(found) == PAGE_SIZE else None
    return Page(items, next_max_id)


async def as_activities(conn: AsyncConnection, urls: Urls, found: list[Status]) -> list[dict]:
    """Statuses as the activities that published them: Create, or Announce for a boost."""
    items = []
    for status in found:
        author = await author_of(conn, status)
        if status.reblog_of_id is not None:
            original = await status_by_id(conn, status.reblog_of_id)
            if original is None:
                continue
            original_author = await author_of(conn, original)
            audience = Audience(to=(PUBLIC,), cc=(urls.actor(original_author),))
            items.append(
                without_context(
                    render_activity(
                        "Announce", status.uri, urls.actor(author), original.uri, audience
                    )
                )
            )
            continue
        note = await note_document(conn, status, urls)
        activity = render_activity(
            "Create",
            f"{status.uri}/activity",
            urls.actor(author),
            render_note(note),
            note.audience,
            status.created_at,
        )
        items.append(without_context(activity))
    return items


def _relation_counter(own_column: str) -> Counter:
    async def count(conn: AsyncConnection, account: Account) -> int:
        column = follows.c[own_column]
        query = (
            select(func.count())
            .select_from(follows)
            .where(column == account.id, follows.c.state == "accepted")
        )
        return int((await conn.execute(query)).scalar_one())

    return count


def _relation_pager(own_column: str, other_column: str) -> Pager:
    async def page(conn: AsyncConnection, urls: Urls, account: Account, max_id: int | None) -> Page:
        query = (
            select_accounts()
            .add_columns(follows.c.id.label("follow_id"))
            .join(follows, follows.c[other_column] == accounts.c.id)
            .where(follows.c[own_column] == account.id, follows.c.state == "accepted")
            .order_by(follows.c.id.desc())
            .limit(PAGE_SIZE)
        )
        if max_id is not None:
            query = query.where(follows.c.id < max_id)
        rows = (await conn.execute(query)).all()
        items = [urls.actor(account_from_row(row)) for row in rows]
        next_max_id = rows[-1].follow_id if len(rows) == PAGE_SIZE else None
        return Page(items, next_max_id)

    return page


async def _empty_count(conn: AsyncConnection, account: Account) -> int:
    return 0


async def _empty_page(
    conn: AsyncConnection, urls: Urls, account: Account, max_id: int | None
) -> Page:
    return Page([], None)


async def count_local_posts(conn: AsyncConnection) -> int:
    """Posts (not boosts) written on this node, for NodeInfo."""
    query = (
        select(func.count())
        .select_from(statuses.join(accounts, accounts.c.id == statuses.c.account_id))
        .where(accounts.c.domain == "", statuses.c.reblog_of_id.is_(None))
    )
    return int((await conn.execute(query)).scalar_one())


async def count_statuses(conn: AsyncConnection, account: Account) -> int:
    query = (
        select(func.count())
        .select_from(statuses)
        .where(statuses.c.account_id == account.id, statuses.c.reblog_of_id.is_(None))
    )
    return int((await conn.execute(query)).scalar_one())


async def count_featured(conn: AsyncConnection, account: Account) -> int:
    return len(await pins.featured(conn, account))


async def featured_page(
    conn: AsyncConnection, urls: Urls, account: Account, max_id: int | None
) -> Page:
    """Pinned posts as Notes (Mastodon embeds them), all on one page (there are at most 5)."""
    if max_id is not None:
        return Page([], None)
    found = await pins.featured(conn, account)
    return Page(
        [without_context(render_note(await note_document(conn, s, urls))) for s in found], None
    )


count_followers = _relation_counter("target_account_id")
count_following = _relation_counter("account_id")


COLLECTIONS: dict[str, tuple[Counter, Pager]] = {
    "outbox": (count_outbox, outbox_page),
    "followers": (
        _relation_counter("target_account_id"),
        _relation_pager("target_account_id", "account_id"),
    ),
    "following": (
        _relation_counter("account_id"),
        _relation_pager("account_id", "target_account_id"),
    ),
    "collections/featured": (count_featured, featured_page),
    # Featured hashtags are not offered yet.
    "collections/tags": (_empty_count, _empty_page),
}
