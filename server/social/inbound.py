"""Inbound activities of the social domain, applied with Mastodon's semantics.

Each handler receives an activity the inbox has already verified (signature, signer ==
actor, same-origin ids) and applies it in the worker's transaction. Anything that names an
object the actor does not own is rejected with a reason, never half-applied.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorDirectory
from federation.db import UnitOfWork, insert_ignoring_duplicates
from federation.dispatch import (
    PRIORITY_INTERACTIVE,
    Dispatcher,
    InboundActivity,
    Outbound,
    Reject,
)
from federation.fetch import Fetcher, FetchError
from protocol.activities import render_activity
from protocol.actors import RemoteActor
from protocol.addressing import PRIVATE
from protocol.as2 import host_of, id_of, ids_of, is_http_url, text_of
from server.identity.accounts import Account, get_account
from server.moderation import is_limited
from server.social import graph
from server.social.distribution import announce_removal, distribute, notify
from server.social.interactions import add_favourite, remove_favourite
from server.social.media import Copy
from server.social.notes import CHAT_MESSAGE, NoteStore
from server.social.remote_accounts import (
    account_by_uri,
    account_for_actor,
    mark_remote_account_deleted,
    upsert_remote_account,
)
from server.social.remote_media import RemoteMedia
from server.social.statuses import NewStatus, boost_by, insert_status, remove_status, status_by_uri
from server.storage.ids import new_id
from server.storage.tables import accounts, blocks, favourites, follows, reports, statuses
from server.urls import Urls

_BOOSTABLE = frozenset({"public", "unlisted"})
Copies = dict[str, Copy]  # copies of a post's pictures, by URL, made in prefetch


class SocialInbox:
    """The social domain's inbound handlers, registered into federation's dispatcher."""

    def __init__(
        self,
        db: UnitOfWork,
        urls: Urls,
        directory: ActorDirectory,
        fetcher: Fetcher,
        media: RemoteMedia,
    ) -> None:
        self.db = db
        self.urls = urls
        self.directory = directory
        self.notes = NoteStore(urls)
        self.fetcher = fetcher
        self.media = media

    def register(self, dispatcher: Dispatcher) -> None:
        actor = self._prefetch_actor
        dispatcher.register("Follow", self.on_follow, actor)
        dispatcher.register("Accept", self.on_accept, actor)
        dispatcher.register("Reject", self.on_reject, actor)
        dispatcher.register("Undo", self.on_undo, actor)
        dispatcher.register("Create", self.on_create, self._prefetch_create)
        dispatcher.register("Update", self.on_update, self._prefetch_update)
        dispatcher.register("Delete", self.on_delete)
        dispatcher.register("Like", self.on_like, actor)
        dispatcher.register("Announce", self.on_announce, self._prefetch_announce)
        dispatcher.register("Block", self.on_block, actor)
        dispatcher.register("Flag", self.on_flag, actor)
        dispatcher.register("Move", self.on_move, self._prefetch_move)

    # --- prefetch: remote reads, outside the transaction ----------------------------------

    async def _prefetch_actor(self, item: InboundActivity) -> RemoteActor:
        return await self.directory.get(item.actor_uri)

    async def _prefetch_create(self, item: InboundActivity) -> tuple[RemoteActor, dict, Copies]:
        actor, note = await self._prefetch_actor(item), await self._object_document(item)
        return actor, note, await self.media.copies(note)

    async def _prefetch_update(self, item: InboundActivity) -> tuple[RemoteActor, dict, Copies]:
        document = item.activity.get("object")
        if isinstance(document, dict) and document.get("id") == item.actor_uri:
            # A profile update: trust the actor's own server, not the embedded copy (keys!).
            return await self.directory.fetch(item.actor_uri), document, {}
        actor, note = await self._prefetch_actor(item), await self._object_document(item)
        return actor, note, await self.media.copies(note, edit=True)

    async def _prefetch_announce(self, item: InboundActivity) -> tuple[RemoteActor, Any]:
        actor = await self._prefetch_actor(item)
        object_id = id_of(item.activity.get("object"))
        if not is_http_url(object_id):
            raise Reject("the Announce has no object")
        async with self.db.read() as conn:
            if await status_by_uri(conn, object_id) is not None:  # type: ignore[arg-type]
                return actor, None
        if object_id.startswith(self.urls.base_url + "/"):  # type: ignore[union-attr]
            raise Reject("the Announce names a local object that does not exist")
        try:
            fetched = await self.fetcher.get_object(object_id)  # type: ignore[arg-type]
        except FetchError as exc:
            raise Reject(f"the announced object cannot be fetched: {exc.reason}") from None
        author_uri = id_of(fetched.document.get("attributedTo"))
        if not is_http_url(author_uri) or host_of(author_uri) != host_of(object_id):  # type: ignore[arg-type]
            raise Reject("the announced object's author is not on its server")
        author = await self.directory.get(author_uri)  # type: ignore[arg-type]
        return actor, (author, fetched.document, await self.media.copies(fetched.document))

    async def _prefetch_move(self, item: InboundActivity) -> tuple[RemoteActor, RemoteActor]:
        target_uri = id_of(item.activity.get("target"))
        if id_of(item.activity.get("object")) != item.actor_uri or not is_http_url(target_uri):
            raise Reject("a Move must move its own actor to a target")
        return await self._prefetch_actor(item), await self.directory.fetch(target_uri)  # type: ignore[arg-type]

    async def _object_document(self, item: InboundActivity) -> dict:
        """The activity's object, embedded or fetched from the actor's own server."""
        obj = item.activity.get("object")
        if isinstance(obj, dict):
            return obj
        object_id = id_of(obj)
        if not is_http_url(object_id) or host_of(object_id) != host_of(item.actor_uri):  # type: ignore[arg-type]
            raise Reject("the object is not on the actor's server")
        try:
            return (await self.fetcher.get_object(object_id)).document  # type: ignore[arg-type]
        except FetchError as exc:
            raise Reject(f"the object cannot be fetched: {exc.reason}") from None

    # --- follows ----------------------------------------------------------------------------

    async def on_follow(
        self, conn: AsyncConnection, item: InboundActivity, actor: RemoteActor, now: datetime
    ) -> list[Outbound]:
        target = await account_for_actor(
            conn, id_of(item.activity.get("object")) or "", self.urls.base_url
        )
        if target is None or not target.is_local:
            raise Reject("the Follow names no local account")
        follower = await upsert_remote_account(conn, actor, now)
        received = {
            "id": item.activity_id,
            "type": "Follow",
            "actor": follower.uri,
            "object": self.urls.actor(target),
        }
        refused = target.is_deleted or target.is_instance_actor
        if refused or await graph.is_blocking_either(conn, follower.id, target.id):
            return self._reply(target, follower, "Reject", received, now)
        existing = await graph.follow_between(conn, follower.id, target.id)
        if existing is not None:
            # A repeated Follow: remember its new id and answer again (Mastodon does).
            await graph.set_follow_state(conn, existing, existing.state, uri=item.activity_id)
            return (
                self._reply(target, follower, "Accept", received, now)
                if existing.state == graph.ACCEPTED
                else []
            )
        # A silenced follower (or domain) needs approval, as on Mastodon.
        needs_approval = target.is_locked or await is_limited(conn, follower)
        state = graph.REQUESTED if needs_approval else graph.ACCEPTED
        await graph.insert_follow(conn, follower.id, target.id, item.activity_id, state, now)
        kind = "follow_request" if state == graph.REQUESTED else "follow"
        await notify(conn, target.id, kind, follower.id, None, now)
        return (
            self._reply(target, follower, "Accept", received, now)
            if state == graph.ACCEPTED
            else []
        )

    def _reply(
        self, local: Account, remote: Account, kind: str, obj: dict, now: datetime
    ) -> list[Outbound]:
        activity = render_activity(
            kind, self.urls.activity(new_id(now)), self.urls.actor(local), obj
        )
        return [
            Outbound(activity, self.urls.actor(local), (remote.uri or "",), PRIORITY_INTERACTIVE)
        ]

    async def _follow_answered(
        self, conn: AsyncConnection, item: InboundActivity, actor: RemoteActor, now: datetime
    ) -> graph.Follow:
        """The local Follow that this Accept/Reject answers; only its target may answer."""
        obj = item.activity.get("object")
        answering = await upsert_remote_account(conn, actor, now)
        follow = await graph.follow_by_uri(conn, id_of(obj) or "") if id_of(obj) else None
        if follow is None and isinstance(obj, dict) and obj.get("type") == "Follow":
            follower = await account_for_actor(
                conn, id_of(obj.get("actor")) or "", self.urls.base_url
            )
            if follower is not None and follower.is_local:
                follow = await graph.follow_between(conn, follower.id, answering.id)
        if follow is None or follow.target_account_id != answering.id:
            raise Reject("it answers no Follow sent to this actor")
        return follow

    async def on_accept(
        self, conn: AsyncConnection, item: InboundActivity, actor: RemoteActor, now: datetime
    ) -> list[Outbound]:
        follow = await self._follow_answered(conn, item, actor, now)
        await graph.set_follow_state(conn, follow, graph.ACCEPTED)
        return []

    async def on_reject(
        self, conn: AsyncConnection, item: InboundActivity, actor: RemoteActor, now: datetime
    ) -> list[Outbound]:
        follow = await self._follow_answered(conn, item, actor, now)
        await graph.remove_follow(conn, follow)
        return []

    # --- undo ---------------------------------------------------------------------------------

    async def on_undo(
        self, conn: AsyncConnection, item: InboundActivity, actor: RemoteActor, now: datetime
    ) -> list[Outbound]:
        account = await upsert_remote_account(conn, actor, now)
        obj = item.activity.get("object")
        undone_id = id_of(obj)
        kind = obj.get("type") if isinstance(obj, dict) else None
        if isinstance(obj, dict) and id_of(obj.get("actor")) not in (None, item.actor_uri):
            raise Reject("an actor can only undo its own activities")
        undo = {
            "Follow": self._undo_follow,
            "Like": self._undo_like,
            "Announce": self._undo_announce,
            "Block": self._undo_block,
        }
        if kind in undo:
            await undo[kind](conn, account, undone_id, obj)
            return []
        for handler in undo.values():  # a bare id: find what it was
            if await handler(conn, account, undone_id, None):
                return []
        return []

    async def _undo_follow(
        self, conn: AsyncConnection, account: Account, uri: str | None, obj: Any
    ) -> bool:
        follow = await graph.follow_by_uri(conn, uri) if uri else None
        if follow is None and isinstance(obj, dict):
            target = await account_for_actor(
                conn, id_of(obj.get("object")) or "", self.urls.base_url
            )
            follow = await graph.follow_between(conn, account.id, target.id) if target else None
        if follow is None or follow.account_id != account.id:
            return False
        await graph.remove_follow(conn, follow)
        return True

    async def _undo_like(
        self, conn: AsyncConnection, account: Account, uri: str | None, obj: Any
    ) -> bool:
        row = None
        if uri:
            row = (
                await conn.execute(
                    select(favourites.c.status_id).where(
                        favourites.c.uri == uri, favourites.c.account_id == account.id
                    )
                )
            ).first()
        if row is None and isinstance(obj, dict):
            status = await status_by_uri(conn, id_of(obj.get("object")) or "")
            if status is not None:
                await remove_favourite(conn, account.id, status.id)
                return True
            return False
        if row is None:
            return False
        await remove_favourite(conn, account.id, row.status_id)
        return True

    async def _undo_announce(
        self, conn: AsyncConnection, account: Account, uri: str | None, obj: Any
    ) -> bool:
        boost = await status_by_uri(conn, uri) if uri else None
        if boost is None or boost.reblog_of_id is None or boost.account_id != account.id:
            return False
        await announce_removal(conn, boost)
        await conn.execute(delete(statuses).where(statuses.c.id == boost.id))
        return True

    async def _undo_block(
        self, conn: AsyncConnection, account: Account, uri: str | None, obj: Any
    ) -> bool:
        condition = blocks.c.uri == uri
        if isinstance(obj, dict):
            target = await account_for_actor(
                conn, id_of(obj.get("object")) or "", self.urls.base_url
            )
            if target is not None:
                condition = blocks.c.target_account_id == target.id
        result = await conn.execute(
            delete(blocks).where(blocks.c.account_id == account.id, condition)
        )
        return result.rowcount > 0

    # --- posts ----------------------------------------------------------------------------------

    async def on_create(
        self,
        conn: AsyncConnection,
        item: InboundActivity,
        prefetched: tuple[RemoteActor, dict, Copies],
        now: datetime,
    ) -> list[Outbound]:
        actor, note, copies = prefetched
        author = await upsert_remote_account(conn, actor, now)
        if note.get("type") == CHAT_MESSAGE:
            await self.notes.store_chat_message(conn, author, note, now, copies)
        else:
            await self.notes.store(conn, author, note, now, item.activity, copies)
        return []

    async def on_update(
        self,
        conn: AsyncConnection,
        item: InboundActivity,
        prefetched: tuple[RemoteActor, dict, Copies],
        now: datetime,
    ) -> list[Outbound]:
        actor, document, copies = prefetched
        account = await upsert_remote_account(conn, actor, now)
        if document.get("id") == item.actor_uri:
            return []  # the profile was refreshed from its server in prefetch
        await self.notes.update(conn, account, document, now, copies)
        return []

    async def on_delete(
        self, conn: AsyncConnection, item: InboundActivity, _: None, now: datetime
    ) -> list[Outbound]:
        object_id = id_of(item.activity.get("object"))
        if not is_http_url(object_id):
            raise Reject("the Delete names no object")
        if object_id == item.actor_uri:
            await self._delete_actor(conn, item.actor_uri, now)
            return []
        status = await status_by_uri(conn, object_id)  # type: ignore[arg-type]
        if status is None:
            if host_of(object_id) == host_of(item.actor_uri):  # type: ignore[arg-type]
                await self.notes.tombstone(conn, object_id, item.actor_uri, now)  # type: ignore[arg-type]
            return []
        author = await get_account(conn, status.account_id)
        if author is None or author.uri != item.actor_uri:
            raise Reject("an actor can only delete its own objects")
        await announce_removal(conn, status)
        await remove_status(conn, status, item.actor_uri, now)
        return []

    async def _delete_actor(self, conn: AsyncConnection, uri: str, now: datetime) -> None:
        account = await account_by_uri(conn, uri)
        if account is None:
            return
        await conn.execute(delete(statuses).where(statuses.c.account_id == account.id))
        await conn.execute(
            delete(follows).where(
                (follows.c.account_id == account.id) | (follows.c.target_account_id == account.id)
            )
        )
        await mark_remote_account_deleted(conn, account, now)

    # --- interactions -------------------------------------------------------------------------

    async def on_like(
        self, conn: AsyncConnection, item: InboundActivity, actor: RemoteActor, now: datetime
    ) -> list[Outbound]:
        status = await status_by_uri(conn, id_of(item.activity.get("object")) or "")
        if status is None:
            raise Reject("the Like names no status known here")
        account = await upsert_remote_account(conn, actor, now)
        if await add_favourite(conn, account.id, status.id, item.activity_id, now):
            await notify(conn, status.account_id, "favourite", account.id, status.id, now)
        return []

    async def on_announce(
        self,
        conn: AsyncConnection,
        item: InboundActivity,
        prefetched: tuple[RemoteActor, Any],
        now: datetime,
    ) -> list[Outbound]:
        actor, fetched = prefetched
        booster = await upsert_remote_account(conn, actor, now)
        if fetched is not None:
            author_actor, note, copies = fetched
            author = await upsert_remote_account(conn, author_actor, now)
            await self.notes.store(conn, author, note, now, copies=copies)
        original = await status_by_uri(conn, id_of(item.activity.get("object")) or "")
        if original is None or original.reblog_of_id is not None:
            raise Reject("the Announce names no status that can be boosted")
        # As Mastodon: public and unlisted posts, and one's own followers-only ones (to the
        # same followers); never a direct message, which would be shown to the booster's
        # followers and on their profile.
        own_private = original.visibility == PRIVATE and original.account_id == booster.id
        if original.visibility not in _BOOSTABLE and not own_private:
            raise Reject("only public, unlisted and one's own followers-only posts are boosted")
        if await boost_by(conn, booster.id, original.id) is not None:
            return []
        visibility = self.notes.visibility(booster, item.activity, [])
        if own_private:
            visibility = PRIVATE
        elif visibility not in _BOOSTABLE:
            visibility = "public"
        boost = await insert_status(
            conn,
            new_id(now),
            NewStatus(
                uri=item.activity_id,
                account_id=booster.id,
                content="",
                visibility=visibility,
                created_at=now,
                reblog_of_id=original.id,
            ),
        )
        if boost is not None:
            await distribute(conn, boost, now)
        return []

    async def on_block(
        self, conn: AsyncConnection, item: InboundActivity, actor: RemoteActor, now: datetime
    ) -> list[Outbound]:
        target = await account_for_actor(
            conn, id_of(item.activity.get("object")) or "", self.urls.base_url
        )
        if target is None or not target.is_local:
            raise Reject("the Block names no local account")
        blocker = await upsert_remote_account(conn, actor, now)
        await graph.sever_follows(conn, blocker.id, target.id)
        if await graph.block_between(conn, blocker.id, target.id) is None:
            await graph.insert_block(conn, blocker.id, target.id, item.activity_id, now)
        return []

    async def on_flag(
        self, conn: AsyncConnection, item: InboundActivity, actor: RemoteActor, now: datetime
    ) -> list[Outbound]:
        reporter = await upsert_remote_account(conn, actor, now)
        target, status_uris = None, []
        for object_id in ids_of(item.activity.get("object")):
            account = await account_for_actor(conn, object_id, self.urls.base_url)
            status = await status_by_uri(conn, object_id)
            if account is not None and account.is_local:
                target = target or account
            elif status is not None:
                status_uris.append(object_id)
                target = target or await get_account(conn, status.account_id)
        if target is None or not target.is_local:
            raise Reject("the Flag names nothing on this server")
        content = text_of(item.activity.get("content"), 5000)
        await insert_ignoring_duplicates(
            conn,
            reports,
            {
                "id": new_id(now),
                "account_id": reporter.id,
                "target_account_id": target.id,
                "status_uris": json.dumps(status_uris),
                "comment": content,
                "uri": item.activity_id,
                "created_at": now,
            },
            keys=["uri"],
        )
        return []

    async def on_move(
        self,
        conn: AsyncConnection,
        item: InboundActivity,
        prefetched: tuple[RemoteActor, RemoteActor],
        now: datetime,
    ) -> list[Outbound]:
        origin_actor, target_actor = prefetched
        if origin_actor.actor_id not in target_actor.also_known_as:
            raise Reject("the Move target does not list the origin in alsoKnownAs")
        origin = await upsert_remote_account(conn, origin_actor, now)
        target = await upsert_remote_account(conn, target_actor, now)
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == origin.id)
            .values(moved_to_uri=target_actor.actor_id)
        )
        outbound: list[Outbound] = []
        for follower in await graph.follower_accounts(conn, origin.id):
            if not follower.is_local:
                continue
            outbound += await graph.unfollow(conn, self.urls, follower, origin, now)
            if not await graph.is_blocking_either(conn, follower.id, target.id):
                outbound += await graph.follow(conn, self.urls, follower, target, now)
        return outbound
