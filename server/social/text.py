"""Turning what people type into the HTML that profiles and posts carry."""

from __future__ import annotations

import html
import re
from collections.abc import Callable


def plain_text_to_html(text: str) -> str:
    """Escape text and keep its paragraphs and line breaks; empty text gives empty HTML."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.strip("\n").split("\n")) + "</p>"
        for p in paragraphs
    )


_MENTION = re.compile(
    r"(?<![\w@/])@([A-Za-z0-9_]{1,30})(?:@([A-Za-z0-9][A-Za-z0-9.\-]*(?::\d+)?))?"
)
_HASHTAG = re.compile(r"(?<![\w&/#])#(\w{1,100})")
_TOKEN = re.compile(f"{_MENTION.pattern}|{_HASHTAG.pattern}")
MentionKey = tuple[str, str | None]  # (username lower-cased, domain lower-cased or None)


def find_mentions(text: str) -> list[MentionKey]:
    """The `@user` and `@user@domain` handles in a post, in order, without repeats."""
    found = [
        (m.group(1).lower(), (m.group(2) or "").lower() or None) for m in _MENTION.finditer(text)
    ]
    return list(dict.fromkeys(found))


def find_hashtags(text: str) -> list[str]:
    """The hashtags of a post, lower-cased, without repeats."""
    return list(dict.fromkeys(m.group(1).lower() for m in _HASHTAG.finditer(text)))


def render_post(text: str, profiles: dict[MentionKey, str], tag_url: Callable[[str], str]) -> str:
    """A local post as HTML: escaped text, paragraphs, mention and hashtag links like Mastodon's.

    `profiles` maps each resolved mention to its profile URL; unresolved handles stay text.
    """
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        "<p>"
        + "<br>".join(_render_line(line, profiles, tag_url) for line in p.strip("\n").split("\n"))
        + "</p>"
        for p in paragraphs
    )


def _render_line(line: str, profiles: dict[MentionKey, str], tag_url: Callable[[str], str]) -> str:
    out, position = [], 0
    for match in _TOKEN.finditer(line):
        out.append(html.escape(line[position : match.start()]))
        out.append(_render_token(match, profiles, tag_url))
        position = match.end()
    out.append(html.escape(line[position:]))
    return "".join(out)


def _render_token(
    match: re.Match[str], profiles: dict[MentionKey, str], tag_url: Callable[[str], str]
) -> str:
    username, domain, tag = match.group(1), match.group(2), match.group(3)
    if tag is not None:
        href = html.escape(tag_url(tag.lower()))
        label = html.escape(tag)
        return f'<a href="{href}" class="mention hashtag" rel="tag">#<span>{label}</span></a>'
    profile = profiles.get((username.lower(), (domain or "").lower() or None))
    if profile is None:
        return html.escape(match.group(0))
    return (
        f'<span class="h-card" translate="no"><a href="{html.escape(profile)}" '
        f'class="u-url mention">@<span>{html.escape(username)}</span></a></span>'
    )
