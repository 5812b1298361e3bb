"""Our own static files (styles, script, default images), served by name from a fixed list.

Pages link them with their content's version (`static_path`: `/static/kith.js?v=…`), and a
versioned link is cached for a year: an upgrade changes the version, so browsers never run
an old script against new pages. Links without the version (clients showing the default
avatar) are cached for five minutes; every answer carries an ETag for revalidation.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from server.api.errors import ApiError

routes = web.RouteTableDef()

_VERSIONED = "public, max-age=31536000, immutable"
_UNVERSIONED = "public, max-age=300"


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str
    version: str  # from the content: changes when the file does


def _load() -> dict[str, _File]:
    """Every file of the static folder, read once: there are few and they are small."""
    folder = resources.files("server").joinpath("static")
    files = {}
    for entry in folder.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            body = entry.read_bytes()
            media_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            files[entry.name] = _File(body, media_type, hashlib.sha256(body).hexdigest()[:16])
    return files


_FILES = _load()


def static_path(name: str) -> str:
    """The versioned path of one of our static files (templates link with it)."""
    return f"/static/{name}?v={_FILES[name].version}"


@routes.get("/static/{name}")
async def static_file(request: web.Request) -> web.Response:
    """A static file by exact name; anything else is a JSON 404 (no paths, no traversal)."""
    found = _FILES.get(request.match_info["name"])
    if found is None:
        raise ApiError(404, "not found", "no such file")
    etag = f'"{found.version}"'
    headers = {
        "Cache-Control": _VERSIONED if request.query.get("v") == found.version else _UNVERSIONED,
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, content_type=found.media_type, headers=headers)
