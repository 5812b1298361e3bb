"""Copies of peers' pictures: fetched within the `[media]` limits, made as uploads are.

A peer's post's pictures are fetched (before the post is stored, outside any transaction)
through federation's fetcher, so every hop passes the address guard, the redirect and time
limits; each is then checked and re-encoded like an upload (server/media.py: the format
sniffed, the pixel limit read from the header before decoding, EXIF and other metadata
dropped, a preview and a blurhash made) and written under a new random name. A picture over
a limit, from a domain blocked with `reject_media`, or that cannot be fetched or read, stays
a link to the peer's server. Copies are named `remote-<token>`, so their total size can be
counted from the directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from federation.db import UnitOfWork
from federation.fetch import Fetcher, FetchError, is_image_media_type
from protocol.activities import AttachmentDocument
from protocol.as2 import host_of, id_of, is_http_url
from server.config import MediaConfig
from server.media import MediaRejected, media_dir, new_token, process_image, write_files
from server.moderation import rejects_media
from server.social.media import Copy, copied_urls, remote_attachments
from server.social.statuses import status_by_uri

log = logging.getLogger("kith.media")

COPY_PREFIX = "remote-"
# The copies' total is counted from the directory at most this often (and kept up to date
# with this process's own copies in between).
_RECOUNT_S = 300.0
# All of one post's pictures are fetched within this time, or the rest stay links: the inbox
# applies activities in order, and a slow media server must not hold it up for long.
POST_BUDGET_S = 20.0
_ACCEPT = "image/*"


class RemoteMedia:
    """Makes the copies of a peer's post's pictures, within the node's limits."""

    def __init__(
        self, db: UnitOfWork, fetcher: Fetcher, config: MediaConfig, data_dir: Path
    ) -> None:
        self.db = db
        self.fetcher = fetcher
        self.config = config
        self.data_dir = data_dir
        self._copied_bytes: int | None = None
        self._counted_at = 0.0

    async def copies(self, note: dict[str, Any], edit: bool = False) -> dict[str, Copy]:
        """Copies of the pictures of a peer's post (by URL) not copied yet: of a new post
        (none for a post already stored), or of an `edit` of a stored one."""
        if not self.config.cache_remote:
            return {}
        pictures = [d for d in remote_attachments(note.get("attachment")) if _is_picture(d)]
        note_id, author = id_of(note.get("id")), id_of(note.get("attributedTo"))
        if not pictures or not is_http_url(note_id) or not is_http_url(author):
            return {}
        async with self.db.read() as conn:
            hosts = {host_of(author), *(host_of(p.url) for p in pictures)}  # type: ignore[arg-type]
            if await rejects_media(conn, *hosts):
                return {}
            if not edit and await status_by_uri(conn, note_id) is not None:  # type: ignore[arg-type]
                return {}  # a repeated Create changes nothing
            done = await copied_urls(conn, note_id)  # type: ignore[arg-type]
        room = self.config.remote_per_status - len(done & {p.url for p in pictures})
        wanted = list(dict.fromkeys(p.url for p in pictures if p.url not in done))[: max(room, 0)]
        found: dict[str, Copy] = {}
        try:
            async with asyncio.timeout(POST_BUDGET_S):
                for url in wanted:  # one at a time: the limit on their total holds
                    copy = await self._copy(url)
                    if copy is not None:
                        found[url] = copy
        except TimeoutError:
            log.info("a post's pictures took too long; the rest stay links", extra={"url": url})
        return found

    async def _copy(self, url: str) -> Copy | None:
        if await self._copied_total() >= self.config.remote_cache_bytes:
            log.info("the copies of peers' pictures are at their limit", extra={"url": url})
            return None
        limit = self.config.remote_max_bytes
        try:
            fetched = await self.fetcher.get_file(url, _ACCEPT, is_image_media_type, limit)
            pixels = self.config.max_pixels
            image = await asyncio.to_thread(process_image, fetched.data, limit, pixels)
        except (FetchError, MediaRejected) as exc:
            log.info("a peer's picture stays a link", extra={"url": url, "reason": str(exc)})
            return None
        names = await asyncio.to_thread(
            write_files, self.data_dir, COPY_PREFIX + new_token(), image
        )
        self._copied_bytes = (self._copied_bytes or 0) + len(image.data) + len(image.preview_data)
        return Copy(image.content_type, names, image.size, image.preview_size, image.blurhash)

    async def _copied_total(self) -> int:
        now = time.monotonic()
        if self._copied_bytes is None or now - self._counted_at > _RECOUNT_S:
            self._copied_bytes = await asyncio.to_thread(_size_of_copies, self.data_dir)
            self._counted_at = now
        return self._copied_bytes


def _is_picture(document: AttachmentDocument) -> bool:
    return document.media_type.lower().startswith("image/")


def _size_of_copies(data_dir: Path) -> int:
    folder = media_dir(data_dir)
    if not folder.is_dir():
        return 0
    with os.scandir(folder) as entries:
        return sum(e.stat().st_size for e in entries if e.name.startswith(COPY_PREFIX))
