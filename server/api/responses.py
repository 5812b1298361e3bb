"""JSON documents with the exact media type peers check (profiles and all)."""

from __future__ import annotations

import json

from aiohttp import web


def json_document(
    body: object, media_type: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response whose Content-Type is `media_type` verbatim, parameters included."""
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        status=status,
        headers={"Content-Type": media_type, **(headers or {})},
    )
