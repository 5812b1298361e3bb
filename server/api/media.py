"""Uploaded pictures served from `/media/`, a path no ActivityPub document lives under.

Only names this node could have minted are looked up (no paths, no traversal); the content
type is the one the file was stored as (its extension, chosen from the sniffed format), and
the headers forbid sniffing, scripts and embedding as a document (CVE-2024-25623's lesson:
an upload must never pass for an actor or a post).
"""

from __future__ import annotations

from aiohttp import web

from server.api.errors import ApiError
from server.appkeys import CONFIG
from server.media import CONTENT_TYPES, is_file_name, media_dir

routes = web.RouteTableDef()

SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Content-Disposition": "inline",
    # A name is never reused for other bytes: caches may keep it for a year.
    "Cache-Control": "public, max-age=31536000, immutable",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Access-Control-Allow-Origin": "*",
}


@routes.get("/media/{name}")
async def media_file(request: web.Request) -> web.StreamResponse:
    """A stored picture or preview by its exact file name."""
    name = request.match_info["name"]
    if not is_file_name(name):
        raise ApiError(404, "Record not found")
    path = media_dir(request.app[CONFIG].data_dir) / name
    if not path.is_file():
        raise ApiError(404, "Record not found")
    content_type = CONTENT_TYPES[name.rpartition(".")[2]]
    response = web.FileResponse(path, headers={**SAFE_HEADERS, "Content-Type": content_type})
    return response
