"""`GET /metrics` for Prometheus, and the middleware that counts every request.

The endpoint answers only clients at the addresses in `metrics.allowed` (the real client, as
the rate limiter resolves it behind a trusted proxy) and, when `metrics.token` is set, with
that bearer token; anyone else gets 403 with the reason. With `metrics.enabled` off it does
not exist (404) and nothing is counted: the middleware is not installed.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from datetime import timedelta

from aiohttp import web

from server.api.errors import Handler, json_error
from server.api.ratelimit import API_LIMITS, client_address
from server.appkeys import CLOCK, CONFIG, DATABASE
from server.config import MetricsConfig
from server.metrics import (
    CONTENT_TYPE,
    Family,
    Gauge,
    NodeMetrics,
    database_gauges,
    process_gauges,
    render,
)

routes = web.RouteTableDef()
log = logging.getLogger("kith.metrics")
METRICS = web.AppKey("metrics", NodeMetrics)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")
_UNMATCHED = "unmatched"  # no route: 404s and 405s, whatever the path was


def install(app: web.Application, settings: MetricsConfig) -> NodeMetrics | None:
    """Count this app's requests and serve `/metrics`, if metrics are enabled."""
    app.router.add_routes(routes)
    if not settings.enabled:
        return None
    metrics = app[METRICS] = NodeMetrics()
    app.middlewares.insert(0, metrics_middleware)
    return metrics


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request under its route's pattern (never its raw path) and time it."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects raised past the error middleware
        _count(request, exc.status, started)
        raise
    _count(request, response.status, started)
    return response


def _count(request: web.Request, status: int, started: float) -> None:
    metrics = request.app[METRICS]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else _UNMATCHED
    method = request.method if request.method in _METHODS else "other"
    status_class = _STATUS_CLASSES[min(max(status // 100, 1), 5)]
    metrics.http_requests.inc((method, route, status_class))
    metrics.http_duration.observe(time.perf_counter() - started, (method, route))


@routes.get("/metrics")
async def metrics_page(request: web.Request) -> web.StreamResponse:
    """The node's metrics in the Prometheus text format, database figures read now."""
    config = request.app[CONFIG]
    metrics = request.app.get(METRICS)
    if metrics is None:
        raise web.HTTPNotFound()
    refusal = _refusal(request, config.metrics)
    if refusal:
        return json_error(403, "forbidden", refusal)
    families: list[Family] = [*metrics.families(), *process_gauges(metrics)]
    up = Gauge("kith_database_up", "Whether the database answered this scrape's queries.")
    try:
        families += await database_gauges(
            request.app[DATABASE],
            request.app[CLOCK](),
            timedelta(hours=config.payments.in_doubt_hours),
        )
        up.set(1)
    except Exception as exc:  # the counters are still worth serving without the database
        log.warning("metrics: database figures unavailable", extra={"error": repr(exc)})
        up.set(0)
    families.append(up)
    return web.Response(
        body=render(families).encode(),
        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
    )


def _refusal(request: web.Request, settings: MetricsConfig) -> str:
    """Why this client may not read the metrics ("" if it may)."""
    address = client_address(request, request.app[API_LIMITS].trusted_proxies)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "the client's address is unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not any(ip in ipaddress.ip_network(n.strip(), strict=False) for n in settings.allowed):
        return f"{address} is not allowed to read the metrics (metrics.allowed)"
    if settings.token:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.token.encode()
        ):
            return "a valid bearer token is required (metrics.token)"
    return ""
