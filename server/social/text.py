"""Turning what people type into the HTML that profiles and posts carry."""

from __future__ import annotations

import html


def plain_text_to_html(text: str) -> str:
    """Escape text and keep its paragraphs and line breaks; empty text gives empty HTML."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.strip("\n").split("\n")) + "</p>"
        for p in paragraphs
    )
