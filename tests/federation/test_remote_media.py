"""Peers' pictures copied here: within the `[media]` limits, through the guarded fetcher,
cleaned as uploads are; links to the peer otherwise; gone with their posts.

A fake peer on loopback serves the pictures (the nodes allow loopback, as an operator may).
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from PIL import Image
from sqlalchemy import select

from federation.tables import inbox_items
from server.moderation import block_domain
from server.social.profiles import delete_account
from tests.api.client import ApiClient, client_for
from tests.api.test_media import fetch, noise_png, photo_with_gps_and_rotation, picture, upload
from tests.federation.fake_peer import PUBLIC, Peer, activity, deliver
from tests.federation.social import stored
from tests.harness import Node, NodeFactory, eventually


def _document(url: str, media_type: str = "image/png", **fields: Any) -> dict[str, Any]:
    return {"type": "Document", "mediaType": media_type, "url": url, "name": None, **fields}


def _create(peer: Peer, serial: str, attachments: list[dict], **fields: Any) -> dict:
    note = {
        "id": f"{peer.actor}/notes/{serial}",
        "type": "Note",
        "attributedTo": peer.actor,
        "content": f"<p>pictures {serial}</p>",
        "to": [PUBLIC],
        "cc": [f"{peer.actor}/followers"],
        "attachment": attachments,
        **fields,
    }
    return activity(peer.mallory, "Create", f"create-{serial}", note)


async def _arrived(node: Node, peer: Peer, create: dict) -> dict:
    """Deliver a Create; the stored post as anonymous clients see it."""
    assert await deliver(node, peer, create) == 202
    status = await eventually(lambda: stored(node, create["object"]["id"]))
    answer = await ApiClient(node, None).get(f"/api/v1/statuses/{status.id}")
    assert answer.status == 200, answer.body
    return answer.body


def _gets(peer: Peer, url: str) -> int:
    return len(peer.gets(url.removeprefix(peer.base)))


def _copied(node: Node, attachment: dict) -> bool:
    return attachment["url"].startswith(node.url("/media/remote-"))


def _files(node: Node) -> set[str]:
    folder = node.config.data_dir / "media"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_a_peers_picture_is_copied_cleaned_with_a_preview_and_a_blurhash(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    url = peer.serve_file("/media/photo.jpg", photo_with_gps_and_rotation(), "image/jpeg")
    create = _create(peer, "1", [_document(url, "image/jpeg", name="a photo", width=80)])
    (shown,) = (await _arrived(node, peer, create))["media_attachments"]

    assert _copied(node, shown)
    assert shown["remote_url"] == url
    assert shown["preview_url"].startswith(node.url("/media/remote-"))
    assert shown["description"] == "a photo"
    assert shown["blurhash"]
    # Turned as the camera said, then every tag dropped (GPS, camera maker).
    assert shown["meta"]["original"]["size"] == "40x80"
    code, body, headers = await fetch(node, shown["url"])
    assert (code, headers["Content-Type"]) == (200, "image/jpeg")
    assert headers["Cache-Control"].startswith("public")
    copy = Image.open(io.BytesIO(body))
    assert copy.size == (40, 80)
    assert not copy.getexif()
    code, _, headers = await fetch(node, shown["preview_url"])
    assert code == 200
    assert _gets(peer, url) == 1
    assert len(_name(shown["url"]).split(".")[0]) >= 32  # a random name, not an id

    # The same Create again fetches nothing.
    assert await deliver(node, peer, {**create, "id": create["id"] + "-again"}) == 202
    await eventually(lambda: _processed_again(node, peer))
    assert _gets(peer, url) == 1


async def _processed_again(node: Node, peer: Peer) -> bool:
    async with node.db.read() as conn:
        rows = (await conn.execute(select(inbox_items.c.state))).scalars().all()
    return bool(rows) and "queued" not in rows


async def test_pictures_over_a_limit_or_that_cannot_be_read_stay_links(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start(media__remote_max_bytes=4000, media__max_pixels=250_000)
    small = peer.serve_file("/m/small.png", picture("PNG", (60, 40)), "image/png")
    big = peer.serve_file("/m/big.png", noise_png(), "image/png")  # about 30 kB
    vast = peer.serve_file("/m/vast.png", picture("PNG", (1000, 1000)), "image/png")
    page = peer.serve_file("/m/page.png", b"<html>not a picture</html>", "text/html")
    fake = peer.serve_file("/m/fake.png", b"\x89PNG but not really", "image/png")
    missing = peer.url("/m/missing.png")
    video = peer.serve_file("/m/clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    urls = [small, big, vast, page, fake, missing, video]
    create = _create(
        peer,
        "limits",
        [_document(u, "video/mp4" if u == video else "image/png") for u in urls],
    )
    shown = (await _arrived(node, peer, create))["media_attachments"]

    assert [a["remote_url"] for a in shown] == urls
    assert [_copied(node, a) for a in shown] == [True] + [False] * 6
    for attachment in shown[1:]:
        assert attachment["url"] == attachment["preview_url"] == attachment["remote_url"]
    assert _gets(peer, video) == 0  # only pictures are fetched
    assert [a["type"] for a in shown] == ["image"] * 6 + ["video"]


async def test_at_most_remote_per_status_pictures_of_a_post_are_copied(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start(media__remote_per_status=2)
    urls = [peer.serve_file(f"/m/{n}.png", picture("PNG"), "image/png") for n in range(3)]
    shown = (await _arrived(node, peer, _create(peer, "3", [_document(u) for u in urls])))[
        "media_attachments"
    ]
    assert [_copied(node, a) for a in shown] == [True, True, False]
    assert _gets(peer, urls[2]) == 0


async def test_once_the_copies_reach_their_total_new_pictures_stay_links(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start(media__remote_cache_bytes=1)
    first = peer.serve_file("/m/first.png", picture("PNG"), "image/png")
    second = peer.serve_file("/m/second.png", picture("PNG"), "image/png")
    (one,) = (await _arrived(node, peer, _create(peer, "a", [_document(first)])))[
        "media_attachments"
    ]
    (two,) = (await _arrived(node, peer, _create(peer, "b", [_document(second)])))[
        "media_attachments"
    ]
    assert (_copied(node, one), _copied(node, two)) == (True, False)
    assert _gets(peer, second) == 0


async def test_a_domain_blocked_with_reject_media_keeps_its_pictures_as_links(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    domain = peer.base.split("//")[1].split(":")[0]
    await node.federation.moderate(
        lambda conn, now: block_domain(conn, domain, "noop", "test", now, reject_media=True)
    )
    url = peer.serve_file("/m/p.png", picture("PNG"), "image/png")
    (shown,) = (await _arrived(node, peer, _create(peer, "r", [_document(url)])))[
        "media_attachments"
    ]
    assert not _copied(node, shown)
    assert _gets(peer, url) == 0


async def test_an_edit_keeps_the_copies_it_keeps_and_the_dropped_one_goes(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    kept = peer.serve_file("/m/kept.png", picture("PNG", (30, 30)), "image/png")
    dropped = peer.serve_file("/m/dropped.png", picture("PNG", (40, 30)), "image/png")
    added = peer.serve_file("/m/added.png", picture("PNG", (50, 30)), "image/png")
    create = _create(peer, "e", [_document(kept), _document(dropped)])
    before = (await _arrived(node, peer, create))["media_attachments"]
    note = {
        **create["object"],
        "attachment": [_document(kept), _document(added)],
        "updated": "2026-11-24T12:30:00Z",
    }
    assert await deliver(node, peer, activity(peer.mallory, "Update", "edit-e", note)) == 202
    status = await stored(node, note["id"])
    assert status is not None
    anonymous = ApiClient(node, None)

    async def shown() -> list[str]:
        entity = (await anonymous.get(f"/api/v1/statuses/{status.id}")).body
        return [a["remote_url"] for a in entity["media_attachments"]]

    await eventually(shown, until=[kept, added].__eq__)
    after = (await anonymous.get(f"/api/v1/statuses/{status.id}")).body["media_attachments"]
    assert after[0]["url"] == before[0]["url"]  # the same copy, not fetched again
    assert _copied(node, after[1])
    assert (_gets(peer, kept), _gets(peer, added)) == (1, 1)
    assert (await fetch(node, before[1]["url"]))[0] == 404
    assert await node.federation.sweep_media(grace=timedelta(0)) == 2  # picture and preview
    assert _name(before[1]["url"]) not in _files(node)
    assert _name(after[0]["url"]) in _files(node)


async def test_a_deleted_posts_copies_end_at_once_and_their_files_are_deleted(
    nodes: NodeFactory, peer: Peer
) -> None:
    node = await nodes.start()
    url = peer.serve_file("/m/d.png", picture("PNG"), "image/png")
    create = _create(peer, "d", [_document(url)])
    (shown,) = (await _arrived(node, peer, create))["media_attachments"]
    names = {_name(shown["url"]), _name(shown["preview_url"])}
    assert names <= _files(node)
    delete = activity(peer.mallory, "Delete", "delete-d", create["object"]["id"])
    assert await deliver(node, peer, delete) == 202
    await eventually(lambda: _gone(node, create["object"]["id"]))
    for name in names:
        assert (await fetch(node, node.url(f"/media/{name}")))[0] == 404
    assert await node.federation.sweep_media() == 0  # an hour's grace: maybe not committed
    await node.federation.sweep_media(grace=timedelta(0))
    assert not names & _files(node)


async def _gone(node: Node, uri: str) -> bool:
    return await stored(node, uri) is None


async def test_a_deleted_accounts_pictures_end_and_are_deleted(node: Node) -> None:
    alice = await client_for(node, "alice")
    uploaded = (await upload(alice, picture("PNG"))).body
    posted = await alice.post(
        "/api/v1/statuses",
        status="@alice note to self",
        visibility="direct",
        media_ids=[uploaded["id"]],
    )
    assert posted.status == 200, posted.body
    code, _, headers = await fetch(node, uploaded["url"])
    assert (code, headers["Cache-Control"].split(",")[0]) == (200, "private")
    account = await node.account("alice")
    await node.perform(lambda conn, now: delete_account(conn, node.urls, account, now))
    assert (await fetch(node, uploaded["url"]))[0] == 404
    await node.federation.sweep_media(grace=timedelta(0))
    assert _name(uploaded["url"]) not in _files(node)
