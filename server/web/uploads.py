"""Pictures uploaded through the web client's forms: processed and stored as the media API
stores them (server/api/mastodon/media.py), unattached until a post or message takes them."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.appkeys import CLOCK, CONFIG, DATABASE
from server.identity.accounts import Account
from server.media import check_size, new_token, process_image, remove_files, write_files
from server.social import media


async def store_pictures(
    request: web.Request, me: Account, files: list[web.FileField], description: str | None
) -> list[int]:
    """The uploads' media ids; MediaRejected (too big, too many pixels, not a picture) says
    what is wrong with the first one that cannot be taken."""
    config, data_dir = request.app[CONFIG].media, request.app[CONFIG].data_dir
    ids = []
    for upload in files:
        data = await asyncio.to_thread(upload.file.read, config.max_bytes + 1)
        check_size(len(data), config.max_bytes)
        image = await asyncio.to_thread(process_image, data, config.max_bytes, config.max_pixels)
        names = await asyncio.to_thread(write_files, data_dir, new_token(), image)
        try:
            async with request.app[DATABASE].transaction() as conn:
                attachment = await media.store_upload(
                    conn, me.id, image, names, description, None, request.app[CLOCK]()
                )
        except BaseException:
            remove_files(data_dir, *names)
            raise
        ids.append(attachment.id)
    return ids
