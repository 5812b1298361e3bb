"""The one place where failures become HTTP answers: JSON bodies with a reason, never a trace."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.api.responses import json_body
from server.logs import request_id_var

log = logging.getLogger("kith.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ApiError(Exception):
    """A client or peer mistake (or a refusal) with the status and reason to send back."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}


def json_error(
    status: int, error: str, description: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """`{"error": ..., "error_description": ...}` as Mastodon's clients read it."""
    body: dict[str, str] = {"error": error}
    if description:
        body["error_description"] = description
    return json_body(body, status=status, headers=headers)


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give each request an id (kept from a sane X-Request-Id) that every log line carries."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
    finally:
        request_id_var.reset(token)
    response.headers["X-Request-Id"] = request_id
    if response.status >= 500:
        log.warning(
            "request failed",
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError, aiohttp's HTTP errors and crashes into JSON error responses."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.error, exc.description, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return json_error(exc.status, exc.reason, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error", extra={"method": request.method, "path": request.path})
        return json_error(500, "internal server error")
