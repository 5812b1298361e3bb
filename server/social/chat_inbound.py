"""What other Kith nodes tell this one about chats: members added, removed or gone, a new
name, a read receipt (the wire format is protocol/chats.py).

The rules a peer cannot bend: a chat this node does not know yet is taken only from its
owner, on the owner's own server, and only when it names someone here; afterwards only the
chat's owner (as this node knows it) adds, removes or renames, and only a member leaves or
reads. Everything else is refused with its reason and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorDirectory, ActorUnavailable, RemoteActor
from federation.dispatch import Dispatcher, InboundActivity, Outbound, Reject
from federation.fetch import FetchError
from protocol.as2 import host_of, id_of, ids_of
from protocol.chats import CHAT_MEMBERS_MAX, ChatDocument, carried_chat, is_chat_activity
from protocol.errors import ProtocolError
from server.identity.accounts import Account
from server.social import chats
from server.social.chats import Chat
from server.social.remote_accounts import account_for_actor, upsert_remote_account
from server.storage.ids import new_id
from server.storage.tables import chats as chats_table
from server.urls import Urls

Actors = dict[str, RemoteActor]


def _people_named(item: InboundActivity) -> list[str]:
    """Whom an Add or Remove names (a Leave or Update carries the chat itself)."""
    if item.activity_type not in ("Add", "Remove"):
        return []
    return ids_of(item.activity.get("object"))[:CHAT_MEMBERS_MAX]


def _is_read_receipt(activity: dict[str, Any]) -> bool:
    return isinstance(activity.get("context"), str)


class ChatInbox:
    """Registers the chat handlers into federation's dispatcher."""

    def __init__(self, urls: Urls, directory: ActorDirectory) -> None:
        self.urls = urls
        self.directory = directory

    def register(self, dispatcher: Dispatcher) -> None:
        for kind in ("Add", "Remove", "Leave", "Update"):
            dispatcher.route(kind, is_chat_activity, self.on_change, self._actors)
        dispatcher.route("Read", _is_read_receipt, self.on_read)

    # --- prefetch: every remote actor the change names, outside the transaction ---------------

    async def _actors(self, item: InboundActivity) -> tuple[ChatDocument, Actors]:
        try:
            document = carried_chat(item.activity)
        except ProtocolError as exc:
            raise Reject(f"bad chat: {exc}") from None
        named = [item.actor_uri, document.owner, *document.members, *_people_named(item)]
        found: Actors = {}
        for uri in dict.fromkeys(named):
            if uri.startswith(self.urls.base_url + "/"):
                continue
            try:
                found[uri] = await self.directory.get(uri)
            except (ActorUnavailable, FetchError) as exc:
                raise Reject(f"chat member {uri} cannot be fetched: {exc}") from None
        return document, found

    # --- apply ---------------------------------------------------------------------------------

    async def on_change(
        self,
        conn: AsyncConnection,
        item: InboundActivity,
        prefetched: tuple[ChatDocument, Actors],
        now: datetime,
    ) -> list[Outbound]:
        document, actors = prefetched
        actor = await self._account(conn, item.actor_uri, actors, now)
        chat = await chats.chat_by_context(conn, document.id)
        if chat is None:
            chat = await self._learn(conn, item, document, actors, now)
        members = await chats.members_of(conn, chat.id)
        owner = next((m for m in members if m.account.id == chat.owner_account_id), None)
        is_owner = owner is not None and owner.account.id == actor.id
        kind = item.activity_type
        if kind == "Leave":
            await self._leave(conn, chat, actor, document, actors, is_owner, now)
        elif not is_owner:
            raise Reject(f"only the chat's owner may {kind} (the actor is not its owner)")
        elif kind == "Update":
            await conn.execute(
                update(chats_table)
                .where(chats_table.c.id == chat.id)
                .values(name=document.name, is_group=True, updated_at=now)
            )
        else:
            people = [await self._account(conn, uri, actors, now) for uri in _people_named(item)]
            for person in people:
                if kind == "Add":
                    await chats.join(conn, chat, person, now)
                else:
                    await chats.part(conn, chat, person, now)
        after = await chats.members_of(conn, chat.id)
        heard = [m.account.id for m in [*members, *after] if m.account.is_local]
        chats.hear_of(conn, chat, heard)
        return []

    async def _learn(
        self,
        conn: AsyncConnection,
        item: InboundActivity,
        document: ChatDocument,
        actors: Actors,
        now: datetime,
    ) -> Chat:
        """A chat first heard of: from its owner, on the owner's server, naming someone here."""
        if item.activity_type != "Add":
            raise Reject("a chat this node does not know can only be learnt from an Add")
        if item.actor_uri != document.owner or host_of(document.id) != host_of(document.owner):
            raise Reject("a new chat must come from its owner, on the owner's server")
        people = [await self._account(conn, uri, actors, now) for uri in document.members]
        if not any(p.is_local for p in people):
            raise Reject("the chat names nobody on this server")
        owner = await self._account(conn, document.owner, actors, now)
        chat_id = new_id(now)
        await conn.execute(
            chats_table.insert().values(
                id=chat_id,
                context_uri=document.id,
                owner_account_id=owner.id,
                name=document.name,
                is_group=True,
                created_at=now,
                updated_at=now,
            )
        )
        chat = await chats.chat_by_id(conn, chat_id)
        assert chat is not None
        for person in people:
            await chats.join(conn, chat, person, now)
        return chat

    async def _leave(
        self,
        conn: AsyncConnection,
        chat: Chat,
        actor: Account,
        document: ChatDocument,
        actors: Actors,
        is_owner: bool,
        now: datetime,
    ) -> None:
        members = await chats.members_of(conn, chat.id)
        if not any(m.account.id == actor.id and m.active for m in members):
            raise Reject("the actor is not in this chat")
        await chats.part(conn, chat, actor, now)
        if is_owner and document.owner != self.urls.actor(actor):
            heir = await self._account(conn, document.owner, actors, now)
            if not any(m.account.id == heir.id and m.active for m in members):
                raise Reject("a leaving owner must hand the chat to one of its members")
            await conn.execute(
                update(chats_table)
                .where(chats_table.c.id == chat.id)
                .values(owner_account_id=heir.id, updated_at=now)
            )

    async def on_read(
        self, conn: AsyncConnection, item: InboundActivity, _: Any, now: datetime
    ) -> list[Outbound]:
        """A member's read receipt (its node sends one only if the member shares them)."""
        chat = await chats.chat_by_context(conn, item.activity["context"])
        reader = await account_for_actor(conn, item.actor_uri, self.urls.base_url)
        if chat is None or reader is None:
            raise Reject("a read receipt for a chat or reader this node does not know")
        members = await chats.members_of(conn, chat.id)
        if not any(m.account.id == reader.id and m.active for m in members):
            raise Reject("the reader is not in this chat")
        message = await chats.message_by_uri(conn, chat, id_of(item.activity.get("object")))
        if message is None:
            raise Reject("the message read is not one of this chat's")
        await chats.set_read(conn, chat, reader.id, message.id)
        chats.hear_of(conn, chat, [m.account.id for m in members if m.account.is_local])
        return []

    async def _account(
        self, conn: AsyncConnection, uri: str, actors: Actors, now: datetime
    ) -> Account:
        if uri in actors:
            return await upsert_remote_account(conn, actors[uri], now)
        account = await account_for_actor(conn, uri, self.urls.base_url)
        if account is None or account.deleted_at is not None:
            raise Reject(f"the chat names {uri}, who is not on this server")
        return account
