"""Picture uploads on a live node: formats, cleaning, limits, ownership, posts and serving."""

from __future__ import annotations

import asyncio
import io
import json
import random
from pathlib import Path

import aiohttp
from PIL import Image

from tests.api.client import Answer, ApiClient, client_for
from tests.harness import Node

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def picture(image_format: str, size: tuple[int, int] = (64, 32), **save: object) -> bytes:
    """A real picture made here: left half red, right half blue (to see rotations)."""
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    out = io.BytesIO()
    image.save(out, format=image_format, **save)
    return out.getvalue()


def photo_with_gps_and_rotation() -> bytes:
    """A JPEG as a phone writes it: GPS position, camera, and "rotate 90° clockwise"."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 24.0)
    return picture("JPEG", (80, 40), exif=exif.tobytes())


def noise_png() -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (100, 100), random.Random(7).randbytes(30_000)).save(out, "PNG")
    return out.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (30, 20), color) for color in ((255, 0, 0), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=80)
    return out.getvalue()


async def upload(
    client: ApiClient,
    data: bytes,
    filename: str = "picture.png",
    content_type: str = "image/png",
    path: str = "/api/v2/media",
    **fields: str,
) -> Answer:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    for name, value in fields.items():
        form.add_field(name, value)
    return await client.request("POST", path, data=form)


async def fetch(node: Node, url: str) -> tuple[int, bytes, dict[str, str]]:
    async with node.http.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


def stored_files(node: Node) -> list[Path]:
    folder = node.config.data_dir / "media"
    return sorted(folder.iterdir()) if folder.exists() else []


async def test_each_picture_format_is_accepted_with_preview_blurhash_and_meta(node: Node) -> None:
    alice = await client_for(node, "alice")
    cases = {
        "JPEG": ("image/jpeg", picture("JPEG", (800, 200))),
        "PNG": ("image/png", picture("PNG", (800, 200))),
        "WEBP": ("image/webp", picture("WEBP", (800, 200))),
        "GIF": ("image/gif", animated_gif()),
    }
    for image_format, (content_type, data) in cases.items():
        # The name and the declared type lie; the bytes decide.
        answer = await upload(alice, data, filename="x.txt", content_type="text/plain")
        assert answer.status == 200, (image_format, answer.body)
        media = answer.body
        assert media["id"].isdigit()
        assert media["type"] == "image"
        assert media["remote_url"] is None
        assert media["blurhash"]
        assert len(media["blurhash"]) >= 6
        assert media["url"].startswith(node.url("/media/"))
        assert media["url"] != media["preview_url"]
        status, body, headers = await fetch(node, media["url"])
        assert status == 200
        assert headers["Content-Type"] == content_type
        assert Image.open(io.BytesIO(body)).format == image_format
        preview = Image.open(io.BytesIO((await fetch(node, media["preview_url"]))[1]))
        assert max(preview.size) <= 400
        assert media["meta"]["small"]["width"] == preview.size[0]
    gif = Image.open(io.BytesIO((await fetch(node, media["url"]))[1]))
    assert gif.n_frames == 2  # the animation is kept; its preview is the first frame
    assert media["meta"]["original"] == {
        "width": 30,
        "height": 20,
        "size": "30x20",
        "aspect": 1.5,
    }


async def test_exif_and_gps_are_removed_after_the_orientation_is_applied(node: Node) -> None:
    alice = await client_for(node, "alice")
    original = photo_with_gps_and_rotation()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)
    answer = await upload(alice, original, "photo.jpg", "image/jpeg", path="/api/v1/media")
    assert answer.status == 200, answer.body
    assert answer.body["meta"]["original"]["size"] == "40x80"
    status, body, _ = await fetch(node, answer.body["url"])
    assert status == 200
    stored = Image.open(io.BytesIO(body))
    assert stored.size == (40, 80)  # rotated upright
    assert not stored.getexif()  # no orientation, camera or GPS left
    assert b"PhoneMaker" not in body
    assert b"Exif" not in body
    # Rotated clockwise, the red left half is now on top.
    red, _, blue = stored.convert("RGB").getpixel((20, 10))
    assert red > 200
    assert blue < 60
    for path in stored_files(node):
        assert b"PhoneMaker" not in path.read_bytes()


async def test_oversized_overlarge_and_unsupported_files_are_refused_and_nothing_is_kept(
    nodes,
) -> None:
    node = await nodes.start(media__max_bytes=20_000, media__max_pixels=100_000)
    alice = await client_for(node, "alice")
    answer = await upload(alice, picture("PNG", (400, 300)) + b"\0" * 30_000)
    assert answer.status == 413
    assert "20000 bytes" in answer.body["error"]
    long_gif = io.BytesIO()
    frames = [Image.new("L", (40, 40), shade) for shade in range(0, 250, 2)]
    frames[0].save(long_gif, "GIF", save_all=True, append_images=frames[1:])
    answer = await upload(alice, long_gif.getvalue())
    assert answer.status == 422
    assert "125 frames of 40x40" in answer.body["error"]
    bomb = picture("PNG", (1000, 1000))  # small file, a million pixels
    assert len(bomb) < 20_000
    answer = await upload(alice, bomb)
    assert answer.status == 422
    assert "1000x1000" in answer.body["error"]
    for data, reason in (
        (picture("BMP", (10, 10)), "BMP"),
        (picture("TIFF", (10, 10)), "TIFF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a picture"),
        (b'{"type": "Person", "id": "http://evil.example/actor"}', "not a picture"),
        (noise_png()[:2000], "damaged"),
        (b"", "empty"),
    ):
        answer = await upload(alice, data)
        assert answer.status == 422, (reason, answer.body)
        assert reason in answer.body["error"], answer.body
    answer = await alice.post("/api/v2/media", description="no file")
    assert answer.status == 422
    assert stored_files(node) == []
    async with node.db.read() as conn:
        from sqlalchemy import func, select

        from server.storage.tables import media_attachments

        count = await conn.execute(select(func.count()).select_from(media_attachments))
        assert count.scalar_one() == 0


async def test_description_and_focus_can_be_changed_before_posting_by_the_owner_only(
    node: Node,
) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    media = (await upload(alice, picture("PNG"), description="first")).body
    assert media["description"] == "first"
    path = f"/api/v1/media/{media['id']}"
    changed = await alice.put(path, description="a red and blue flag", focus="0.5,-0.25")
    assert changed.status == 200, changed.body
    assert changed.body["description"] == "a red and blue flag"
    assert changed.body["meta"]["focus"] == {"x": 0.5, "y": -0.25}
    assert (await alice.get(path)).body["description"] == "a red and blue flag"
    assert (await bob.get(path)).status == 404
    assert (await bob.put(path, description="mine now")).status == 404
    assert (await alice.put(path, focus="3,0")).status == 422
    assert (await alice.put(path, description="x" * 1501)).status == 422


async def test_a_status_shows_its_pictures_and_media_only_posts_are_allowed(node: Node) -> None:
    alice = await client_for(node, "alice")
    first = (await upload(alice, picture("PNG"), description="one")).body
    second = (await upload(alice, picture("JPEG"))).body
    answer = await alice.post("/api/v1/statuses", status="", media_ids=[second["id"], first["id"]])
    assert answer.status == 200, answer.body
    shown = answer.body["media_attachments"]
    assert [m["id"] for m in shown] == [second["id"], first["id"]]
    assert shown[1]["description"] == "one"
    assert shown[0]["url"] == second["url"]
    again = await alice.get(f"/api/v1/statuses/{answer.body['id']}")
    assert again.body["media_attachments"] == shown
    # Attached: it can be neither attached again nor edited through the media endpoint.
    reused = await alice.post("/api/v1/statuses", status="again", media_ids=[first["id"]])
    assert reused.status == 422
    assert (await alice.get(f"/api/v1/media/{first['id']}")).status == 404
    note = await node.http.get(answer.body["uri"], headers={"Accept": "application/activity+json"})
    document = await note.json(content_type=None)
    assert [a["url"] for a in document["attachment"]] == [second["url"], first["url"]]
    assert document["attachment"][1] == {
        "type": "Document",
        "mediaType": "image/png",
        "url": first["url"],
        "name": "one",
        "blurhash": first["blurhash"],
        "width": 64,
        "height": 32,
    }


async def test_another_users_upload_cannot_be_attached(node: Node) -> None:
    alice = await client_for(node, "alice")
    mallory = await client_for(node, "mallory")
    media = (await upload(alice, picture("PNG"))).body
    answer = await mallory.post("/api/v1/statuses", status="look", media_ids=[media["id"]])
    assert answer.status == 422
    assert "not an unattached upload of yours" in answer.body["error"]
    assert (await mallory.get("/api/v1/timelines/home")).body == []
    mine = await alice.post("/api/v1/statuses", status="mine", media_ids=[media["id"]])
    assert mine.status == 200, mine.body


async def test_too_many_or_malformed_media_ids_are_refused(node: Node) -> None:
    alice = await client_for(node, "alice")
    ids = [(await upload(alice, picture("PNG"))).body["id"] for _ in range(5)]
    answer = await alice.post("/api/v1/statuses", status="five", media_ids=ids)
    assert answer.status == 422
    assert "at most 4" in answer.body["error"]
    assert (await alice.post("/api/v1/statuses", status="x", media_ids=["abc"])).status == 422
    assert (await alice.post("/api/v1/statuses", status="", media_ids=[])).status == 422


async def test_files_are_served_with_safe_headers_and_only_by_their_names(node: Node) -> None:
    alice = await client_for(node, "alice")
    media = (await upload(alice, picture("WEBP"))).body
    status, _, headers = await fetch(node, media["url"])
    assert status == 200
    assert headers["Content-Type"] == "image/webp"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert headers["Content-Disposition"] == "inline"
    assert "max-age=31536000" in headers["Cache-Control"]
    token = media["url"].rsplit("/", 1)[1].split(".")[0]
    assert len(token) >= 32
    assert not token.isdigit()
    for path in (
        "/media/..%2Fkith.db",
        "/media/kith.db",
        f"/media/{token}.png",  # the right token with another type
        "/media/" + "A" * 32 + ".webp",
    ):
        assert (await fetch(node, node.url(path)))[0] == 404, path


async def test_deleting_a_status_deletes_its_pictures(node: Node) -> None:
    alice = await client_for(node, "alice")
    media = (await upload(alice, picture("PNG"))).body
    status = (await alice.post("/api/v1/statuses", status="", media_ids=[media["id"]])).body
    assert (await alice.delete(f"/api/v1/statuses/{status['id']}")).status == 200
    assert (await fetch(node, media["url"]))[0] == 404
    assert (await fetch(node, media["preview_url"]))[0] == 404
    assert stored_files(node) == []


async def test_the_instance_tells_apps_what_they_may_upload(nodes) -> None:
    node = await nodes.start(media__max_bytes=1_000_000)
    v2 = (await ApiClient(node, None).get("/api/v2/instance")).body
    limits = v2["configuration"]["media_attachments"]
    assert limits["supported_mime_types"] == ["image/gif", "image/jpeg", "image/png", "image/webp"]
    assert limits["image_size_limit"] == 1_000_000
    assert limits["image_matrix_limit"] == 33_177_600
    v1 = (await ApiClient(node, None).get("/api/v1/instance")).body
    assert v1["configuration"]["media_attachments"] == limits


async def test_an_edit_keeps_reorders_adds_and_drops_pictures(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    first, second, third = [(await upload(alice, picture("PNG"))).body for _ in range(3)]
    status = (await alice.post("/api/v1/statuses", status="", media_ids=[first["id"]])).body
    path = f"/api/v1/statuses/{status['id']}"
    # Apps resend the current ids with a text edit; a media-only post may stay text-less.
    resent = await alice.put(path, status="", media_ids=[first["id"]])
    assert resent.status == 200, resent.body
    assert [m["id"] for m in resent.body["media_attachments"]] == [first["id"]]
    kept = await alice.put(path, status="now with words")
    assert [m["id"] for m in kept.body["media_attachments"]] == [first["id"]]
    changed = await alice.put(path, status="two", media_ids=[second["id"], first["id"]])
    assert changed.status == 200, changed.body
    assert [m["id"] for m in changed.body["media_attachments"]] == [second["id"], first["id"]]
    dropped = await alice.put(path, status="one", media_ids=[first["id"]])
    assert [m["id"] for m in dropped.body["media_attachments"]] == [first["id"]]
    assert (await alice.get(f"/api/v1/media/{second['id']}")).status == 200  # unattached again
    bobs = (await upload(bob, picture("PNG"))).body
    stolen = await alice.put(path, status="one", media_ids=[first["id"], bobs["id"]])
    assert stolen.status == 422
    five = [first["id"], second["id"], third["id"], bobs["id"], "1"]
    assert (await alice.put(path, status="x", media_ids=five)).status == 422
    assert (await alice.put(path, status="", media_ids=[])).status == 422
    after = (await alice.get(path)).body
    assert after["content"] == "<p>one</p>"
    assert [m["id"] for m in after["media_attachments"]] == [first["id"]]


async def test_only_media_lists_the_posts_with_pictures(node: Node) -> None:
    alice = await client_for(node, "alice")
    media = (await upload(alice, picture("PNG"))).body
    with_picture = (await alice.post("/api/v1/statuses", status="p", media_ids=[media["id"]])).body
    await alice.post("/api/v1/statuses", status="words only")
    me = (await alice.get("/api/v1/accounts/verify_credentials")).body
    listed = await alice.get(f"/api/v1/accounts/{me['id']}/statuses", only_media="true")
    assert [s["id"] for s in listed.body] == [with_picture["id"]]


async def test_the_public_media_stream_hears_only_posts_with_pictures(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    media = (await upload(bob, picture("PNG"))).body
    url = node.url(f"/api/v1/streaming?access_token={alice.token}&stream=public:media")
    async with node.http.ws_connect(url) as socket:
        await asyncio.sleep(0.05)
        await bob.post("/api/v1/statuses", status="no picture")
        posted = (await bob.post("/api/v1/statuses", status="", media_ids=[media["id"]])).body
        message = await asyncio.wait_for(socket.receive(), 5.0)
        event = json.loads(message.data)
        assert event["event"] == "update"
        assert json.loads(event["payload"])["id"] == posted["id"]


async def test_uploads_left_unattached_for_a_day_are_deleted(node: Node) -> None:
    alice = await client_for(node, "alice")
    old = (await upload(alice, picture("PNG"))).body
    posted = (await upload(alice, picture("JPEG"))).body
    await alice.post("/api/v1/statuses", status="kept", media_ids=[posted["id"]])
    node.clock.advance(hours=25)
    fresh = (await upload(alice, picture("GIF"))).body  # a new upload sweeps the old ones
    assert (await alice.get(f"/api/v1/media/{old['id']}")).status == 404
    assert (await fetch(node, old["url"]))[0] == 404
    assert (await fetch(node, posted["url"]))[0] == 200
    assert (await alice.get(f"/api/v1/media/{fresh['id']}")).status == 200
