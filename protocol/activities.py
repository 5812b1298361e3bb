"""Activities and Notes as Kith sends them: compact AS2 with Mastodon's inline terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from protocol.actors import format_datetime
from protocol.addressing import Audience
from protocol.vocab import AS2_CONTEXT

ACTIVITY_CONTEXT: list[Any] = [
    AS2_CONTEXT,
    {
        "ostatus": "http://ostatus.org#",
        "conversation": "ostatus:conversation",
        "sensitive": "as:sensitive",
        "Hashtag": "as:Hashtag",
        "toot": "http://joinmastodon.org/ns#",
        "context": {"@id": "as:context", "@type": "@id"},
    },
]


@dataclass(frozen=True)
class NoteDocument:
    """A post as it federates."""

    note_id: str
    url: str
    attributed_to: str
    content_html: str
    published: datetime
    audience: Audience
    in_reply_to: str | None = None
    summary: str | None = None
    sensitive: bool = False
    context: str | None = None
    updated: datetime | None = None
    mentions: tuple[tuple[str, str], ...] = ()  # (actor id, "@user@host")
    hashtags: tuple[tuple[str, str], ...] = ()  # ("#tag", tag page URL)
    language: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def render_note(note: NoteDocument) -> dict[str, Any]:
    """The Note object (no @context: it travels inside an activity or gets one added)."""
    document: dict[str, Any] = {
        "id": note.note_id,
        "type": "Note",
        "attributedTo": note.attributed_to,
        "content": note.content_html,
        "published": format_datetime(note.published),
        "url": note.url,
        "to": list(note.audience.to),
        "cc": list(note.audience.cc),
        "inReplyTo": note.in_reply_to,
        "summary": note.summary or None,
        "sensitive": note.sensitive,
        "tag": [{"type": "Mention", "href": href, "name": name} for href, name in note.mentions]
        + [{"type": "Hashtag", "name": name, "href": href} for name, href in note.hashtags],
    }
    if note.context:
        document["context"] = note.context
        document["conversation"] = note.context
    if note.updated:
        document["updated"] = format_datetime(note.updated)
    if note.language:
        document["contentMap"] = {note.language: note.content_html}
    document.update(note.extra)
    return document


def render_activity(
    activity_type: str,
    activity_id: str,
    actor: str,
    obj: Any,
    audience: Audience | None = None,
    published: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Any activity: Create, Follow, Accept, Undo, Like, Announce, Delete, Block, Flag…"""
    activity: dict[str, Any] = {
        "@context": ACTIVITY_CONTEXT,
        "id": activity_id,
        "type": activity_type,
        "actor": actor,
        "object": obj,
    }
    if audience is not None:
        activity["to"] = list(audience.to)
        activity["cc"] = list(audience.cc)
    if published is not None:
        activity["published"] = format_datetime(published)
    activity.update(extra)
    return activity


def without_context(document: dict[str, Any]) -> dict[str, Any]:
    """An activity embedded in another (Undo's object) carries no @context of its own."""
    return {key: value for key, value in document.items() if key != "@context"}
