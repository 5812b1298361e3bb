"""Our own static files (styles, default images), served by name from a fixed list."""

from __future__ import annotations

import mimetypes
from importlib import resources

from aiohttp import web

from server.api.errors import ApiError

routes = web.RouteTableDef()


def _load() -> dict[str, tuple[bytes, str]]:
    """Every file of the static folder, read once: there are few and they are small."""
    folder = resources.files("server").joinpath("static")
    files = {}
    for entry in folder.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            media_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            files[entry.name] = (entry.read_bytes(), media_type)
    return files


_FILES = _load()


@routes.get("/static/{name}")
async def static_file(request: web.Request) -> web.Response:
    """A static file by exact name; anything else is a JSON 404 (no paths, no traversal)."""
    found = _FILES.get(request.match_info["name"])
    if found is None:
        raise ApiError(404, "not found", "no such file")
    body, media_type = found
    return web.Response(
        body=body,
        content_type=media_type,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
