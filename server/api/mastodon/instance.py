"""The instance entities (v1 and v2), peers and custom emojis, as Mastodon serves them."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web
from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import __version__
from server.api.responses import json_body
from server.appkeys import CLOCK, CONFIG, DATABASE, URLS
from server.config import InstanceConfig, MediaConfig
from server.identity.accounts import count_users
from server.identity.registration import Policy
from server.media import CONTENT_TYPES
from server.social.collections import count_local_posts
from server.social.media import DESCRIPTION_LENGTH_MAX
from server.social.posting import TEXT_LENGTH_MAX
from server.storage.tables import accounts

routes = web.RouteTableDef()

# Client libraries switch features on by version; Kith implements Mastodon 4.3's API.
MASTODON_COMPATIBLE = "4.3.0"
API_VERSION = 2


def version_string() -> str:
    return f"{MASTODON_COMPATIBLE} (compatible; Kith {__version__})"


def _configuration(streaming_url: str, media: MediaConfig) -> dict:
    return {
        "urls": {"streaming": streaming_url},
        "vapid": {"public_key": ""},
        "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
        "statuses": {
            "max_characters": TEXT_LENGTH_MAX,
            "max_media_attachments": 4,
            "characters_reserved_per_url": 23,
        },
        "media_attachments": {
            # Apps offer uploads only of these types, within these limits (pictures only).
            "supported_mime_types": sorted(CONTENT_TYPES.values()),
            "description_limit": DESCRIPTION_LENGTH_MAX,
            "image_size_limit": media.max_bytes,
            "image_matrix_limit": media.max_pixels,
            "video_size_limit": 0,
            "video_frame_rate_limit": 0,
            "video_matrix_limit": 0,
        },
        "polls": {
            "max_options": 4,
            "max_characters_per_option": 50,
            "min_expiration": 300,
            "max_expiration": 2629746,
        },
        "translation": {"enabled": False},
    }


def _registrations(instance: InstanceConfig) -> dict:
    """As Mastodon's: enabled when anyone may sign up (open or with approval); the message
    only while they may not (invite-only servers say where to get an invite)."""
    policy = Policy.of(instance)
    message = instance.registrations_message.strip() or None
    return {
        "enabled": policy.enabled,
        "approval_required": policy.approval_required,
        "reason_required": policy.approval_required and instance.require_reason,
        "message": None if policy.enabled else message,
        "min_age": None,
        "url": None,
    }


def _streaming_url(base_url: str) -> str:
    return "wss://" + base_url[8:] if base_url.startswith("https://") else "ws://" + base_url[7:]


@routes.get("/api/v2/instance")
async def instance_v2(request: web.Request) -> web.Response:
    """The v2 instance entity."""
    config, urls = request.app[CONFIG], request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        active = await count_users(conn, active_since=request.app[CLOCK]() - timedelta(days=30))
    return json_body(
        {
            "domain": urls.domain,
            "title": config.instance.name,
            "version": version_string(),
            "source_url": "",
            "description": config.instance.description,
            "usage": {"users": {"active_month": active}},
            "thumbnail": {"url": urls.static("header-missing.png")},
            "icon": [],
            "languages": ["en"],
            "configuration": _configuration(_streaming_url(urls.base_url), config.media),
            "registrations": _registrations(config.instance),
            "api_versions": {"mastodon": API_VERSION},
            "contact": {"email": "", "account": None},
            "rules": [],
        }
    )


@routes.get("/api/v1/instance")
async def instance_v1(request: web.Request) -> web.Response:
    """The v1 instance entity (older apps still read it)."""
    config, urls = request.app[CONFIG], request.app[URLS]
    policy = Policy.of(config.instance)
    async with request.app[DATABASE].read() as conn:
        users = await count_users(conn)
        posts = await count_local_posts(conn)
        domains = await _peer_count(conn)
    return json_body(
        {
            "uri": urls.domain,
            "title": config.instance.name,
            "short_description": config.instance.description,
            "description": config.instance.description,
            "email": "",
            "version": version_string(),
            "urls": {"streaming_api": _streaming_url(urls.base_url)},
            "stats": {"user_count": users, "status_count": posts, "domain_count": domains},
            "thumbnail": urls.static("header-missing.png"),
            "languages": ["en"],
            "registrations": policy.enabled,
            "approval_required": policy.approval_required,
            "invites_enabled": policy.invites_enabled,
            "configuration": _configuration(_streaming_url(urls.base_url), config.media),
            "contact_account": None,
            "rules": [],
        }
    )


async def _peer_count(conn: AsyncConnection) -> int:
    query = select(func.count(distinct(accounts.c.domain))).where(accounts.c.domain != "")
    return int((await conn.execute(query)).scalar_one())


@routes.get("/api/v1/instance/peers")
async def peers(request: web.Request) -> web.Response:
    """Domains this node knows accounts on."""
    async with request.app[DATABASE].read() as conn:
        rows = await conn.execute(
            select(accounts.c.domain)
            .distinct()
            .where(accounts.c.domain != "")
            .order_by(accounts.c.domain)
        )
        return json_body([row[0] for row in rows])


@routes.get("/api/v1/instance/rules")
async def rules(request: web.Request) -> web.Response:
    return json_body([])


@routes.get("/api/v1/custom_emojis")
async def custom_emojis(request: web.Request) -> web.Response:
    """No custom emojis yet."""
    return json_body([])
