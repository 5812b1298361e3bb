"""The aiohttp application of one node, built from its config and database (no globals).

`create_app` serves everything (and, unless told otherwise, runs the background workers);
`create_worker_app` is a worker process's: the workers, and /healthz alone to serve.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import jinja2
from aiohttp import web

from federation.observe import Observe, ignore
from server.api import (
    activitypub,
    auth,
    c2s,
    chats,
    health,
    inbox,
    media,
    oauth,
    openapi,
    password_reset,
    proxy,
    ratelimit,
    static,
    streaming,
    wellknown,
)
from server.api import metrics as metrics_api
from server.api import payments as payments_api
from server.api import web as web_pages
from server.api.cors import cors_middleware
from server.api.errors import error_middleware, request_context_middleware
from server.api.mastodon import accounts as mastodon_accounts
from server.api.mastodon import admin as mastodon_admin
from server.api.mastodon import conversations as mastodon_conversations
from server.api.mastodon import instance as mastodon_instance
from server.api.mastodon import lists as mastodon_lists
from server.api.mastodon import markers as mastodon_markers
from server.api.mastodon import media as mastodon_media
from server.api.mastodon import notifications as mastodon_notifications
from server.api.mastodon import pins as mastodon_pins
from server.api.mastodon import registrations as mastodon_registrations
from server.api.mastodon import reports as mastodon_reports
from server.api.mastodon import search as mastodon_search
from server.api.mastodon import statuses as mastodon_statuses
from server.api.mastodon import timelines as mastodon_timelines
from server.appkeys import CLOCK, CONFIG, DATABASE, FEDERATION, TEMPLATES, URLS
from server.clock import Clock, utcnow
from server.config import Config
from server.federating import Federation
from server.storage.engine import Database, EventChannel
from server.streaming import CHANNEL, encode_events
from server.urls import Urls
from server.web import routes as web_client

# Bodies above this are refused before they are read; the inbox sets its own, smaller cap.
CLIENT_BODY_BYTES_MAX = 8 * 1024 * 1024


def create_app(
    config: Config, db: Database, clock: Clock = utcnow, workers: bool = True
) -> web.Application:
    """Wire routes, middlewares and dependencies for one node; without `workers` (a web
    process) the inbox items and deliveries it queues are left to the worker processes."""
    app = web.Application(
        middlewares=[
            request_context_middleware,
            cors_middleware,
            ratelimit.rate_limit_middleware,
            error_middleware,
        ],
        client_max_size=CLIENT_BODY_BYTES_MAX,
    )
    app[CONFIG] = config
    app[DATABASE] = db
    app[CLOCK] = clock
    app[URLS] = urls = Urls(base_url=config.base_url, domain=config.domain)
    app[FEDERATION] = Federation(config, db, urls, clock, observe=_instrument(app, config, db))
    app[oauth.LOGIN_LIMITER] = oauth.login_limiter(config.api.login_attempts_per_window)
    app[ratelimit.API_LIMITS] = _api_limits(config)
    app.cleanup_ctx.append(_run_federation(workers))
    auth.install(app)
    streaming.install(app)
    mastodon_registrations.install(app, config)
    password_reset.install(app)
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.PackageLoader("server", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app[TEMPLATES].globals["static"] = static.static_path
    for table in (
        wellknown.routes,
        activitypub.routes,
        web_pages.routes,
        health.routes,
        inbox.routes,
        media.routes,
        oauth.routes,
        password_reset.routes,
        static.routes,
        mastodon_accounts.routes,
        mastodon_admin.routes,
        mastodon_conversations.routes,
        mastodon_instance.routes,
        mastodon_lists.routes,
        mastodon_markers.routes,
        mastodon_media.routes,
        mastodon_notifications.routes,
        mastodon_pins.routes,
        mastodon_registrations.routes,
        mastodon_reports.routes,
        mastodon_search.routes,
        mastodon_statuses.routes,
        mastodon_timelines.routes,
        openapi.routes,
        streaming.routes,
        c2s.routes,
        proxy.routes,
        payments_api.routes,
        chats.routes,
    ):
        app.router.add_routes(table)
    web_client.install(app)
    activitypub.add_collection_routes(app.router)
    _accept_trailing_slashes(app.router)
    return app


def _accept_trailing_slashes(router: web.UrlDispatcher) -> None:
    """Serve `/path/` like `/path` (Mastodon's clients add the slash; Rails ignores it)."""
    for resource in list(router.resources()):
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if not path or path.endswith("/"):
            continue
        for route in list(resource):
            router.add_route(route.method, path + "/", route.handler)


def create_worker_app(config: Config, db: Database, clock: Clock = utcnow) -> web.Application:
    """A worker process (`kith serve --role worker`): the inbox and delivery workers, the
    settlement and expiry loops, and only /healthz and /metrics (its own counters: the
    deliveries and inbox activities it handled) to serve."""
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = config
    app[DATABASE] = db
    app[CLOCK] = clock
    app[URLS] = urls = Urls(base_url=config.base_url, domain=config.domain)
    app[FEDERATION] = Federation(config, db, urls, clock, observe=_instrument(app, config, db))
    app[ratelimit.API_LIMITS] = _api_limits(config)  # /metrics reads its trusted proxies
    if not db.is_sqlite:
        # What the workers commit (a follow applied, a payment received) reaches the clients
        # streaming from the web processes, as a NOTIFY in the committing transaction.
        db.event_channel = EventChannel(CHANNEL, encode_events)
    app.cleanup_ctx.append(_run_federation(workers=True))
    app.router.add_routes(health.routes)
    return app


def _instrument(app: web.Application, config: Config, db: Database) -> Observe:
    """Metrics for this process (`/metrics`), when enabled: what federation reports to."""
    metrics = metrics_api.install(app, config.metrics)
    if metrics is None:
        return ignore
    db.timing = metrics.unit_of_work
    return metrics.observe


def _api_limits(config: Config) -> ratelimit.ApiLimits:
    return ratelimit.api_limits(
        config.api.requests_per_window,
        config.api.anonymous_requests_per_window,
        config.api.rate_limit_window_seconds,
        config.api.posts_per_window,
        config.api.posts_window_seconds,
        config.api.trusted_proxies,
    )


def _run_federation(workers: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        """Start the inbox and delivery workers with the app, stop them with it."""
        federation = app[FEDERATION]
        await federation.start(workers)
        yield
        await federation.stop()

    return run
