"""CORS for what browsers' JavaScript may read from other origins: discovery, AS2, client API."""

from __future__ import annotations

from aiohttp import web

from server.api.errors import Handler

_PUBLIC_PREFIXES = ("/.well-known/", "/nodeinfo/", "/users/", "/actor", "/api/", "/oauth/token")
_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept, Idempotency-Key",
    "Access-Control-Max-Age": "86400",
}


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """RFC 7033 §5 wants `Access-Control-Allow-Origin: *` on WebFinger; clients want it on APIs."""
    if not request.path.startswith(_PUBLIC_PREFIXES):
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers=_PREFLIGHT_HEADERS)
    response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = "Link, X-Request-Id"
    return response
