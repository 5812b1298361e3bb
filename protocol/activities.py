"""Activities and Notes as Kith sends them: compact AS2 with Mastodon's inline terms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from protocol.actors import format_datetime
from protocol.addressing import Audience
from protocol.as2 import as_list, host_of, id_of, is_http_url, text_of, url_of
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
        "blurhash": "toot:blurhash",
        "focalPoint": {"@container": "@list", "@id": "toot:focalPoint"},
    },
]


@dataclass(frozen=True)
class AttachmentDocument:
    """A picture attached to a post, as Mastodon federates it (a `Document`)."""

    media_type: str
    url: str
    name: str | None = None  # the description (alt text)
    blurhash: str | None = None
    width: int | None = None
    height: int | None = None
    focal_point: tuple[float, float] | None = None


def render_attachment(attachment: AttachmentDocument) -> dict[str, Any]:
    """The `Document` in a Note's `attachment` list (Mastodon's shape)."""
    document: dict[str, Any] = {
        "type": "Document",
        "mediaType": attachment.media_type,
        "url": attachment.url,
        "name": attachment.name,
    }
    if attachment.blurhash:
        document["blurhash"] = attachment.blurhash
    if attachment.focal_point is not None:
        document["focalPoint"] = list(attachment.focal_point)
    if attachment.width and attachment.height:
        document["width"] = attachment.width
        document["height"] = attachment.height
    return document


ATTACHMENT_TYPES = frozenset({"Document", "Image", "Video", "Audio"})
_DESCRIPTION_MAX = 1500
_BLURHASH = re.compile(r"[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]{6,100}")
_DIMENSION_MAX = 100_000


def read_attachments(value: Any, limit: int) -> list[AttachmentDocument]:
    """The attachments of a peer's Note; malformed ones are skipped, at most `limit` kept."""
    found = []
    for item in as_list(value):
        if not isinstance(item, dict) or item.get("type") not in ATTACHMENT_TYPES:
            continue
        url = url_of(item.get("url")) or url_of(item.get("href"))
        if url is None:
            continue
        media_type = item.get("mediaType")
        blurhash = item.get("blurhash")
        found.append(
            AttachmentDocument(
                media_type=media_type[:100] if isinstance(media_type, str) else "",
                url=url,
                name=text_of(item.get("name"), _DESCRIPTION_MAX) or None,
                blurhash=blurhash
                if isinstance(blurhash, str) and _BLURHASH.fullmatch(blurhash)
                else None,
                width=_dimension(item.get("width")),
                height=_dimension(item.get("height")),
                focal_point=_focal_point(item.get("focalPoint")),
            )
        )
        if len(found) == limit:
            break
    return found


def _dimension(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _DIMENSION_MAX:
        return value
    return None


def _focal_point(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    x, y = value
    if all(isinstance(v, int | float) and not isinstance(v, bool) and -1 <= v <= 1 for v in value):
        return (float(x), float(y))
    return None


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
    attachments: tuple[AttachmentDocument, ...] = ()
    # A payment request or transfer this message is about (a chat's payment message).
    payment: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# A Link in a Note's tags naming the payment the message is about; other servers ignore it
# and show the message's text, which carries the same link.
PAYMENT_LINK_REL = "https://kith.social/ns#payment"


def payment_link(uri: str) -> dict[str, Any]:
    return {"type": "Link", "rel": PAYMENT_LINK_REL, "href": uri}


def payment_of(note: dict[str, Any]) -> str | None:
    """The payment a Note names, if its author's server could have made it (same origin)."""
    author = id_of(note.get("attributedTo"))
    for tag in as_list(note.get("tag")):
        if not isinstance(tag, dict) or tag.get("type") != "Link":
            continue
        if PAYMENT_LINK_REL not in as_list(tag.get("rel")):
            continue
        href = tag.get("href")
        if is_http_url(href) and is_http_url(author) and host_of(href) == host_of(author):
            return href
    return None


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
        + [{"type": "Hashtag", "name": name, "href": href} for name, href in note.hashtags]
        + ([payment_link(note.payment)] if note.payment else []),
    }
    if note.context:
        document["context"] = note.context
        document["conversation"] = note.context
    if note.updated:
        document["updated"] = format_datetime(note.updated)
    if note.language:
        document["contentMap"] = {note.language: note.content_html}
    if note.attachments:
        document["attachment"] = [render_attachment(a) for a in note.attachments]
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
