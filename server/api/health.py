"""Liveness for load balancers and operators: is the node up and its database answering?"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from server.api.responses import json_body
from server.appkeys import DATABASE

routes = web.RouteTableDef()
log = logging.getLogger("kith.health")
_DATABASE_TIMEOUT_S = 5


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers within a few seconds, 503 otherwise."""
    try:
        await asyncio.wait_for(request.app[DATABASE].ping(), _DATABASE_TIMEOUT_S)
    except (TimeoutError, OSError, Exception) as exc:  # any failure means "not healthy"
        log.warning("health check: database unreachable", extra={"reason": type(exc).__name__})
        return json_body(
            {"status": "unavailable", "database": "unreachable"},
            status=503,
            headers={"Cache-Control": "no-store"},
        )
    return json_body({"status": "ok", "database": "ok"}, headers={"Cache-Control": "no-store"})
