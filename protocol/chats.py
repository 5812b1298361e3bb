"""Kith chats on the wire: the `Chat` document and the activities that change one.

A chat is a thread of direct messages grouped by its FEP-7888 `context`. Between Kith nodes
the context also names a `Chat`: its name, its owner (`attributedTo`, the one member who may
rename it or remove people) and its members. Membership changes travel as `Add`, `Remove`
and `Leave` activities and renames as `Update`, each carrying the chat as it stands after
the change; read receipts travel as `Read`. Other servers ignore these and still see a
working thread of direct messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.as2 import as_list, host_of, id_of, is_http_url
from protocol.errors import ProtocolError
from protocol.vocab import AS2_CONTEXT

CHATS_CONTEXT_URL = "https://kith.social/ns/chats/v1"
CHAT_CONTEXT: list[Any] = [AS2_CONTEXT, CHATS_CONTEXT_URL]
CHAT_TYPE = "Chat"
CHAT_NAME_MAX = 100
CHAT_MEMBERS_MAX = 100
# The activities that change a chat, and what each carries the chat in.
CHAT_ACTIVITIES = {"Add": "target", "Remove": "target", "Leave": "object", "Update": "object"}


@dataclass(frozen=True)
class ChatDocument:
    """A chat as its owner's node describes it."""

    id: str  # the context of its messages
    owner: str
    members: tuple[str, ...]
    name: str | None = None


def render_chat(chat: ChatDocument) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": chat.id,
        "type": CHAT_TYPE,
        "attributedTo": chat.owner,
        "members": list(chat.members),
    }
    if chat.name:
        document["name"] = chat.name
    return document


def read_chat(document: Any) -> ChatDocument:
    """A `Chat` from a peer, checked: its id is on its owner's server, members are actors."""
    if not isinstance(document, dict) or document.get("type") != CHAT_TYPE:
        raise ProtocolError("not a Chat")
    chat_id, owner = id_of(document.get("id")), id_of(document.get("attributedTo"))
    if not is_http_url(chat_id) or not is_http_url(owner):
        raise ProtocolError("a Chat needs an id and an owner (attributedTo)")
    if host_of(chat_id) != host_of(owner):  # type: ignore[arg-type]
        raise ProtocolError("a Chat's id must be on its owner's server")
    members = [id_of(m) for m in as_list(document.get("members"))]
    if len(members) > CHAT_MEMBERS_MAX or not all(is_http_url(m) for m in members):
        raise ProtocolError(f"a Chat has at most {CHAT_MEMBERS_MAX} members, each an actor")
    name = document.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > CHAT_NAME_MAX):
        raise ProtocolError(f"a Chat's name is text of at most {CHAT_NAME_MAX} characters")
    return ChatDocument(chat_id, owner, tuple(dict.fromkeys(members)), name or None)  # type: ignore[arg-type]


def is_chat_activity(activity: dict[str, Any]) -> bool:
    """Whether an activity changes a chat (claimed before the social handlers see it)."""
    where = CHAT_ACTIVITIES.get(activity.get("type", ""))
    carried = activity.get(where) if where else None
    return isinstance(carried, dict) and carried.get("type") == CHAT_TYPE


def carried_chat(activity: dict[str, Any]) -> ChatDocument:
    return read_chat(activity.get(CHAT_ACTIVITIES.get(activity.get("type", ""), "object")))
