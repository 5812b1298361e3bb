"""Mastodon media endpoints: upload a picture, read it back, describe it before posting."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import BodyPartReader, web

from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.mastodon.entities import render_media
from server.api.params import path_id, request_params, string
from server.api.responses import json_body
from server.appkeys import CLOCK, CONFIG, DATABASE, URLS
from server.identity.accounts import Account
from server.media import (
    MediaRejected,
    ProcessedImage,
    check_size,
    new_token,
    process_image,
    remove_files,
    write_files,
)
from server.social import media
from server.social.media import DESCRIPTION_LENGTH_MAX, InvalidMedia

routes = web.RouteTableDef()
_FIELD_BYTES_MAX = 16 * 1024  # description, focus: small text fields


@routes.post("/api/v1/media")
@routes.post("/api/v2/media")
async def upload(request: web.Request) -> web.Response:
    """Store a picture, processed at once (200, never 202: it is ready when answered)."""
    account = await require_account(request, "write:media")
    config = request.app[CONFIG].media
    data, fields = await _read_upload(request, config.max_bytes)
    description = _description(fields)
    focus = _focus(fields)
    try:
        image = await asyncio.to_thread(process_image, data, config.max_bytes, config.max_pixels)
    except MediaRejected as exc:
        raise ApiError(exc.status, f"Validation failed: {exc}") from None
    data_dir = request.app[CONFIG].data_dir
    names = await asyncio.to_thread(write_files, data_dir, new_token(), image)
    try:
        attachment = await _record(request, account, image, names, description, focus)
    except BaseException:
        remove_files(data_dir, *names)
        raise
    # Uploads left unattached for a day go (Mastodon's rule), a batch at each new upload:
    # storage is only ever claimed here, so this keeps up with it.
    before = request.app[CLOCK]() - media.UNATTACHED_KEEP
    await media.prune_unattached(request.app[DATABASE], data_dir, before, batches=1)
    return json_body(render_media(attachment, request.app[URLS]))


async def _record(
    request: web.Request,
    account: Account,
    image: ProcessedImage,
    names: tuple[str, str],
    description: str | None,
    focus: dict[str, float] | None,
) -> media.Attachment:
    now: datetime = request.app[CLOCK]()
    async with request.app[DATABASE].transaction() as conn:
        return await media.store_upload(conn, account.id, image, names, description, focus, now)


async def _read_upload(request: web.Request, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """The `file` part (read no further than the limit allows) and the small text fields."""
    if request.content_type != "multipart/form-data":
        raise ApiError(422, "Validation failed: the picture must be sent as multipart form data")
    if request.content_length and request.content_length > max_bytes + 1024 * 1024:
        raise ApiError(
            413, f"Validation failed: the file is larger than the limit of {max_bytes} bytes"
        )
    reader = await request.multipart()
    data: bytes | None = None
    fields: dict[str, str] = {}
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file" and data is None:
            data = await _read_part(part, max_bytes)
        elif part.name in ("description", "focus"):
            raw = await part.read(decode=True)
            if len(raw) > _FIELD_BYTES_MAX:
                raise ApiError(422, f"Validation failed: {part.name} is too long")
            fields[part.name] = raw.decode("utf-8", errors="replace")
        else:
            await part.release()  # e.g. a custom `thumbnail`: not supported for pictures
    if data is None:
        raise ApiError(422, "Validation failed: File can't be blank")
    return data, fields


async def _read_part(part: BodyPartReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := await part.read_chunk(64 * 1024):
        total += len(chunk)
        try:
            check_size(total, max_bytes)
        except MediaRejected as exc:
            raise ApiError(413, f"Validation failed: {exc}") from None
        chunks.append(chunk)
    return b"".join(chunks)


def _description(params: dict[str, Any]) -> str | None:
    value = params.get("description")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > DESCRIPTION_LENGTH_MAX:
        raise ApiError(
            422, f"Validation failed: description is at most {DESCRIPTION_LENGTH_MAX} characters"
        )
    return value


def _focus(params: dict[str, Any]) -> dict[str, float] | None:
    value = params.get("focus")
    if value is None or value == "":
        return None
    try:
        return media.parse_focus(str(value))
    except InvalidMedia as exc:
        raise ApiError(422, f"Validation failed: {exc}") from None


@routes.get("/api/v1/media/{id}")
async def get_media(request: web.Request) -> web.Response:
    """One's own upload not yet attached (Mastodon answers 404 for anything else)."""
    account = await require_account(request, "write:media")
    async with request.app[DATABASE].read() as conn:
        attachment = await _own(conn, account, path_id(request))
    return json_body(render_media(attachment, request.app[URLS]))


@routes.put("/api/v1/media/{id}")
async def update_media(request: web.Request) -> web.Response:
    """Change the description or focus of one's own upload before it is posted."""
    account = await require_account(request, "write:media")
    params = await request_params(request)
    description = _description(
        {"description": string(params, "description", max_length=DESCRIPTION_LENGTH_MAX)}
    )
    focus = _focus(params)
    async with request.app[DATABASE].transaction() as conn:
        attachment = await _own(conn, account, path_id(request))
        attachment = await media.describe(conn, attachment, description, focus)
    return json_body(render_media(attachment, request.app[URLS]))


async def _own(conn: Any, account: Account, media_id: int) -> media.Attachment:
    try:
        return await media.own_unattached(conn, account.id, media_id)
    except LookupError:
        raise ApiError(404, "Record not found") from None
