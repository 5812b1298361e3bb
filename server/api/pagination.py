"""Mastodon's pagination: cursors in, a `Link` header with `next` and `prev` out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from server.api.params import integer
from server.api.responses import json_body
from server.appkeys import URLS
from server.social.timelines import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PageRequest

_CURSORS = ("max_id", "since_id", "min_id")


def page_request(
    params: dict[str, Any], default: int = PAGE_LIMIT_DEFAULT, most: int = PAGE_LIMIT_MAX
) -> PageRequest:
    """The page a client asks for; a limit above the maximum is lowered, as Mastodon does."""
    limit = integer(params, "limit", default, low=0) or default
    return PageRequest(
        limit=min(limit, most),
        max_id=integer(params, "max_id"),
        since_id=integer(params, "since_id"),
        min_id=integer(params, "min_id"),
    )


def paginated(
    request: web.Request, body: list[Any], cursors: list[int] | None = None
) -> web.Response:
    """A JSON list with its `Link` header; `cursors` are the items' paging ids, newest first
    (by default the entities' own ids)."""
    ids = cursors if cursors is not None else [int(item["id"]) for item in body]
    response = json_body(body)
    if ids:
        response.headers["Link"] = ", ".join(
            (
                f'<{_page_url(request, max_id=ids[-1])}>; rel="next"',
                f'<{_page_url(request, min_id=ids[0])}>; rel="prev"',
            )
        )
    return response


def _page_url(request: web.Request, **cursor: int) -> str:
    kept = [(key, value) for key, value in request.query.items() if key not in _CURSORS]
    query = urlencode([*kept, *((key, str(value)) for key, value in cursor.items())])
    return f"{request.app[URLS].base_url}{request.path}?{query}"
