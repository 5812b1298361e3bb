"""Uploaded pictures: checked, cleaned and stored under the data directory.

The real format is sniffed from the bytes by Pillow (never from the name or the client's
content type); the pixel limit is checked from the header before anything is decoded, so a
decompression bomb is refused cheaply. Every picture is re-encoded after its EXIF orientation
is applied, which drops EXIF (GPS, camera), XMP, ICC and comments. Files are named by random
tokens: the URL is the only key, so a direct message's pictures are as private as its URL.
"""

from __future__ import annotations

import io
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blurhash
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

# Sniffed format → (file extension, content type). Nothing else is accepted.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
}
CONTENT_TYPES = {ext: content_type for ext, content_type in FORMATS.values()}
# The preview fits this box (Mastodon's "small" is about 640x360; clients show it in a feed).
PREVIEW_BOX = (400, 400)
# Components of the blurhash (Mastodon uses 4x4); more looks no better at a placeholder's size.
BLURHASH_COMPONENTS = (4, 3)
# The blurhash package is pure Python: it reads a copy this small in a millisecond or two.
BLURHASH_SOURCE_BOX = (32, 32)
_TOKEN_BYTES = 24  # 32 URL-safe characters: unguessable
_GIF_KEEP = ("duration", "loop", "transparency", "background", "disposal")


class MediaRejected(ValueError):
    """An upload that is not stored; `status` is the HTTP answer (413 or 422), the text says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    def meta(self) -> dict[str, Any]:
        """Mastodon's `meta.original` / `meta.small` object."""
        return {
            "width": self.width,
            "height": self.height,
            "size": f"{self.width}x{self.height}",
            "aspect": round(self.width / self.height, 6) if self.height else 1.0,
        }


@dataclass(frozen=True)
class ProcessedImage:
    """A cleaned picture and its preview, ready to be written."""

    extension: str
    content_type: str
    data: bytes
    size: Size
    preview_extension: str
    preview_data: bytes
    preview_size: Size
    blurhash: str


def check_size(length: int, max_bytes: int) -> None:
    """413 when an upload is over the configured size."""
    if length > max_bytes:
        raise MediaRejected(413, f"the file is larger than the limit of {max_bytes} bytes")


def process_image(data: bytes, max_bytes: int, max_pixels: int) -> ProcessedImage:
    """Check and re-encode an uploaded picture (CPU-bound: run it in a thread)."""
    check_size(len(data), max_bytes)
    if not data:
        raise MediaRejected(422, "the file is empty")
    with warnings.catch_warnings():
        # Our own pixel limit decides; Pillow's warning is not an answer.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise MediaRejected(422, "the picture has too many pixels") from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise MediaRejected(422, "the file is not a picture this server can read") from None
        if image.format not in FORMATS:
            accepted = ", ".join(FORMATS)
            raise MediaRejected(
                422, f"pictures in {image.format} format are not accepted (only {accepted})"
            )
        width, height = image.size
        if width < 1 or height < 1:
            raise MediaRejected(422, "the picture has no pixels")
        if width * height > max_pixels:
            raise MediaRejected(
                422,
                f"the picture has {width}x{height} pixels, more than the limit of {max_pixels}",
            )
        frames = getattr(image, "n_frames", 1) if image.format == "GIF" else 1
        if frames > 1 and width * height * frames > max_pixels:
            # Every frame is decoded: many small frames are as heavy as one huge picture.
            raise MediaRejected(
                422,
                f"the animation has {frames} frames of {width}x{height} pixels, more than the "
                f"limit of {max_pixels} pixels in all",
            )
        try:
            return _reencode(image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise MediaRejected(422, "the picture is damaged and cannot be decoded") from None


def _reencode(image: Image.Image) -> ProcessedImage:
    source_format = image.format or ""
    animated = source_format == "GIF" and getattr(image, "n_frames", 1) > 1
    image.seek(0)
    first = ImageOps.exif_transpose(image.copy()) or image.copy()
    extension, content_type = FORMATS[source_format]
    data = _animated_gif(image) if animated else _still(first, source_format)
    preview = first.convert("RGBA" if _has_alpha(first) else "RGB")
    preview.thumbnail(PREVIEW_BOX)
    preview_format = "PNG" if source_format == "GIF" else source_format
    preview_data = _still(preview, preview_format)
    return ProcessedImage(
        extension=extension,
        content_type=content_type,
        data=data,
        size=Size(*first.size),
        preview_extension=FORMATS[preview_format][0],
        preview_data=preview_data,
        preview_size=Size(*preview.size),
        blurhash=_blurhash(preview),
    )


def _blurhash(image: Image.Image) -> str:
    """The placeholder hash, computed from a tiny copy (it only keeps the lowest frequencies)."""
    tiny = image.convert("RGB")
    tiny.thumbnail(BLURHASH_SOURCE_BOX)
    width, height = tiny.size
    pixels = list(tiny.tobytes())
    rows = [
        [pixels[(y * width + x) * 3 : (y * width + x) * 3 + 3] for x in range(width)]
        for y in range(height)
    ]
    return blurhash.encode(rows, *BLURHASH_COMPONENTS)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _still(image: Image.Image, image_format: str) -> bytes:
    """One frame, encoded afresh with no metadata at all."""
    if image_format == "JPEG":
        image = image.convert("RGB")
    elif image_format == "WEBP":
        image = image.convert("RGBA" if _has_alpha(image) else "RGB")
    elif image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGBA")
    clean = image.copy()
    clean.info = {}  # savers read comments, EXIF, XMP and ICC profiles from here
    out = io.BytesIO()
    options: dict[str, Any] = {"quality": 90} if image_format in ("JPEG", "WEBP") else {}
    if image_format == "GIF":
        transparency = image.info.get("transparency")
        if transparency is not None:
            options["transparency"] = transparency
    clean.save(out, format=image_format, **options)
    return out.getvalue()


def _animated_gif(image: Image.Image) -> bytes:
    """An animated GIF re-encoded frame by frame, keeping only its timing and transparency."""
    frames = [frame.copy() for frame in ImageSequence.Iterator(image)]
    for frame in frames:
        frame.info = {key: frame.info[key] for key in _GIF_KEEP if key in frame.info}
    out = io.BytesIO()
    options = {key: image.info[key] for key in ("loop", "duration") if key in image.info}
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], **options)
    return out.getvalue()


AVATAR_SIZE = 400  # profile pictures are cut to this square (Mastodon's size)


def process_avatar(data: bytes, max_bytes: int, max_pixels: int) -> tuple[bytes, str]:
    """A profile picture: checked and cleaned as any upload, then cut to a centred square of
    AVATAR_SIZE pixels (an animation keeps its first frame); its bytes and file extension."""
    cleaned = process_image(data, max_bytes, max_pixels)
    with Image.open(io.BytesIO(cleaned.data)) as image:
        image.seek(0)
        frame = image.convert("RGBA" if _has_alpha(image) else "RGB")
    square = ImageOps.fit(frame, (AVATAR_SIZE, AVATAR_SIZE), Image.Resampling.LANCZOS)
    image_format = "PNG" if cleaned.extension in ("gif", "png") else "JPEG"
    if cleaned.extension == "webp":
        image_format = "WEBP"
    return _still(square, image_format), FORMATS[image_format][0]


AVATAR_BYTES_MAX = 2 * 1024 * 1024  # Mastodon's limit for profile pictures


def store_avatar(data_dir: Path, data: bytes, max_pixels: int) -> str:
    """A profile picture, checked and cut to a square (`process_avatar`), written under media/:
    its file name. Raises MediaRejected (413 or 422) for what cannot be one."""
    picture, extension = process_avatar(data, AVATAR_BYTES_MAX, max_pixels)
    return write_file(data_dir, f"{new_token()}.{extension}", picture)


def write_file(data_dir: Path, name: str, data: bytes) -> str:
    """Write one file under media/ (never half a file); returns its name."""
    if not is_file_name(name):
        raise ValueError(f"{name!r} is not a media file name")
    folder = media_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _write_new(folder / name, data)
    return name


def new_token() -> str:
    """A random file name stem: nobody can guess another upload's URL."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def media_dir(data_dir: Path) -> Path:
    return data_dir / "media"


def write_files(data_dir: Path, token: str, image: ProcessedImage) -> tuple[str, str]:
    """Write the picture and its preview; returns their file names."""
    folder = media_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{token}.{image.extension}"
    preview = f"{token}-small.{image.preview_extension}"
    _write_new(folder / name, image.data)
    _write_new(folder / preview, image.preview_data)
    return name, preview


def _write_new(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def remove_files(data_dir: Path, *names: str | None) -> None:
    """Delete stored files (an upload whose row could not be stored)."""
    for name in names:
        if name and is_file_name(name):
            (media_dir(data_dir) / name).unlink(missing_ok=True)


def is_file_name(name: str) -> bool:
    """Whether `name` is one we could have minted (no paths, no other files)."""
    stem, dot, extension = name.rpartition(".")
    stem = stem.removesuffix("-small")
    return (
        bool(dot)
        and extension in CONTENT_TYPES
        and 16 <= len(stem) <= 64
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in stem)
    )
