"""The web client's routes and template helpers, added to the node's app."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from server.appkeys import TEMPLATES
from server.web import auth, chats, profiles, settings, statuses, timelines, wallet

ROUTE_TABLES = (
    auth.routes,
    timelines.routes,
    statuses.routes,
    profiles.routes,
    chats.routes,
    wallet.routes,
    settings.routes,
)


def install(app: web.Application) -> None:
    """Add the web client's routes and the template filters its pages use."""
    app[TEMPLATES].filters["http_url"] = http_url
    for table in ROUTE_TABLES:
        app.router.add_routes(table)


def http_url(value: object) -> str | None:
    """A URL to put in an href or src: http(s) or a path of ours, else nothing (never
    `javascript:` or `data:`)."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("/") and not value.startswith("//"):
        return value
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None
