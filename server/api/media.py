"""Uploaded pictures served from `/media/`, a path no ActivityPub document lives under.

Only names this node could have minted are looked up (no paths, no traversal), and only
while an attachment names them: a deleted post's pictures are gone at once, whatever deleted
it. The content type is the one the file was stored as (its extension, chosen from the
sniffed format), and the headers forbid sniffing, scripts and embedding as a document
(CVE-2024-25623's lesson: an upload must never pass for an actor or a post). Pictures of
posts that are not public are never kept by shared caches.
"""

from __future__ import annotations

from aiohttp import web

from protocol.addressing import is_public
from server.api.errors import ApiError
from server.appkeys import CONFIG, DATABASE
from server.media import CONTENT_TYPES, is_file_name, media_dir
from server.social.media import file_visibility

routes = web.RouteTableDef()

# A name is never reused for other bytes: caches may keep it for a year (shared caches only
# what a public post shows).
_PUBLIC_CACHE = "public, max-age=31536000, immutable"
_PRIVATE_CACHE = "private, max-age=31536000, immutable"
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Content-Disposition": "inline",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Access-Control-Allow-Origin": "*",
}


@routes.get("/media/{name}")
async def media_file(request: web.Request) -> web.StreamResponse:
    """A stored picture or preview by its exact file name."""
    name = request.match_info["name"]
    if not is_file_name(name):
        raise ApiError(404, "Record not found")
    async with request.app[DATABASE].read() as conn:
        visibility = await file_visibility(conn, name)
    path = media_dir(request.app[CONFIG].data_dir) / name
    if visibility is None or not path.is_file():
        raise ApiError(404, "Record not found")
    headers = {
        **SAFE_HEADERS,
        "Content-Type": CONTENT_TYPES[name.rpartition(".")[2]],
        "Cache-Control": _PUBLIC_CACHE if is_public(visibility) else _PRIVATE_CACHE,
    }
    return web.FileResponse(path, headers=headers)
