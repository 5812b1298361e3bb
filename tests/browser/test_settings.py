"""Settings in a real browser: the profile with a picture, privacy, the password, authorised
apps, and the data download; bad input is said inline and changes nothing."""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import pytest
from PIL import Image

from server.identity.accounts import password_hash_of
from server.identity.passwords import verify_password
from server.identity.tokens import authenticate
from server.social.chats import shares_read_receipts
from tests.browser.support import (
    PASSWORD,
    check_accessibility,
    new_page,
    screenshot,
    sign_in,
    sign_out,
)
from tests.browser.support import sign_up as sign_up_page
from tests.harness import Node

pytestmark = pytest.mark.slow
NEW_PASSWORD = "a brand new passphrase"


def picture(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(out, format="PNG")
    return out.getvalue()


async def submit(page: Any, node: Node, selector: str, path: str) -> int:
    async with page.expect_response(
        lambda r: r.url.split("?")[0].startswith(node.url(path)) and r.request.method == "POST"
    ) as answer:
        await page.click(selector)
    return (await answer.value).status


async def test_profile_and_privacy_with_a_picture_and_inline_errors(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    node, _ = two_nodes
    page = await new_page(browser)
    await sign_up_page(page, node, "erin")
    await page.goto(node.url("/settings"))
    assert await check_accessibility(page) == []
    await screenshot(page, "settings")

    # Too big, then not a picture: said next to the field (413, 422), nothing saved.
    await page.fill("#display_name", "Erin of the Long Name " * 3)
    for data, status, says in (
        (os.urandom(3 * 1024 * 1024), 413, "larger than 2 MB"),
        (b"GIF89a but not really", 422, "not a picture"),
    ):
        file = {"name": "me.png", "mimeType": "image/png", "buffer": data}
        await page.set_input_files("#avatar", files=[file])
        assert (
            await submit(page, node, "button:has-text('Save the profile')", "/settings/profile")
            == status
        )
        assert says in await page.locator("#avatar-error").inner_text()
        assert await page.get_attribute("#avatar", "aria-invalid") == "true"
    erin = await node.account("erin")
    assert erin.display_name == ""
    assert erin.avatar_file is None
    assert await check_accessibility(page) == []
    await screenshot(page, "settings-errors")

    await page.fill("#display_name", "Erin Quinn")
    await page.fill("#note", "Baker, cyclist.")
    picked = {"name": "me.png", "mimeType": "image/png", "buffer": picture(600, 300)}
    await page.set_input_files("#avatar", files=[picked])
    assert (
        await submit(page, node, "button:has-text('Save the profile')", "/settings/profile") == 200
    )
    await page.locator("#profile .notice", has_text="saved").wait_for()
    erin = await node.account("erin")
    assert (erin.display_name, erin.note) == ("Erin Quinn", "Baker, cyclist.")
    assert erin.avatar_file is not None
    src = await page.get_attribute("#profile img.avatar", "src")
    assert src.endswith(f"/media/{erin.avatar_file}")
    shown = await page.context.request.get(src)
    assert shown.status == 200
    assert Image.open(io.BytesIO(await shown.body())).size == (400, 400)  # cut to a square
    actor = await node.http.get("/users/erin", headers={"Accept": "application/activity+json"})
    assert (await actor.json())["icon"]["url"] == src
    entity = await node.http.get(f"/api/v1/accounts/{erin.id}")
    assert (await entity.json())["avatar"] == src
    # A new picture replaces it: the old one is no longer served.
    picked = {"name": "me.jpg", "mimeType": "image/jpeg", "buffer": picture(300, 500)}
    await page.set_input_files("#avatar", files=[picked])
    assert (
        await submit(page, node, "button:has-text('Save the profile')", "/settings/profile") == 200
    )
    await page.wait_for_function(
        "old => document.querySelector('#profile img.avatar').src !== old", arg=src
    )
    assert (await page.context.request.get(src)).status == 404

    await page.check("#locked")
    await page.check("#read_receipts")
    assert await submit(page, node, "button:has-text('Save privacy')", "/settings/privacy") == 200
    await page.locator("#privacy .notice").wait_for()
    assert (await node.account("erin")).is_locked
    async with node.db.read() as conn:
        assert await shares_read_receipts(conn, erin.id)
    await page.reload()
    assert await page.is_checked("#locked")
    assert await page.is_checked("#read_receipts")
    assert page.csp_violations == []


async def test_password_apps_and_the_data_download(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    node, _ = two_nodes
    page = await new_page(browser)
    await sign_up_page(page, node, "frank")
    app_token = await node.create_token("frank")
    posted = await node.http.post(
        "/api/v1/statuses",
        json={"status": "Hello from an app"},
        headers={"Authorization": f"Bearer {app_token}"},
    )
    assert posted.status == 200

    # Wrong current password, too short, different twice: each said, nothing changed.
    await page.goto(node.url("/settings"))
    await page.fill("#current_password", "not my password")
    await page.fill("#new_password", "short")
    await page.fill("#new_password_confirmation", "shorter")
    assert (
        await submit(page, node, "button:has-text('Change the password')", "/settings/password")
        == 422
    )
    for field in ("current_password", "new_password", "new_password_confirmation"):
        assert await page.locator(f"#{field}-error").is_visible(), field
    frank = await node.account("frank")
    async with node.db.read() as conn:
        assert verify_password(PASSWORD, await password_hash_of(conn, frank.id))
    assert await check_accessibility(page) == []

    # Authorised apps: this browser (no revoke) and the app's token, revoked here.
    assert await page.locator("#apps .app-item", has_text="This browser").count() == 1
    assert await page.locator("#apps .app-item", has_text="test").count() == 1
    await screenshot(page, "settings-apps")
    assert await submit(page, node, "#apps button:has-text('Revoke')", "/settings/apps/") == 200
    await page.locator("#apps .notice").wait_for()
    assert await page.locator("#apps .app-item", has_text="test").count() == 0
    async with node.db.read() as conn:
        assert await authenticate(conn, app_token, node.clock()) is None

    # The download: profile, posts, follows, wallet.
    download = await page.context.request.get(node.url("/settings/export.zip"))
    assert download.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(await download.body()))
    assert set(archive.namelist()) == {
        "profile.json",
        "posts.json",
        "following_accounts.csv",
        "followers.csv",
        "wallet.csv",
    }
    posts = json.loads(archive.read("posts.json"))
    assert [p["content"] for p in posts] == ["<p>Hello from an app</p>"]
    assert json.loads(archive.read("profile.json"))["username"] == "frank"

    # A good change keeps this browser signed in, and the new password is the one.
    other = await node.create_token("frank")
    await page.fill("#current_password", PASSWORD)
    await page.fill("#new_password", NEW_PASSWORD)
    await page.fill("#new_password_confirmation", NEW_PASSWORD)
    await page.click("button:has-text('Change the password')")
    await page.wait_for_url(node.url("/settings?saved=password#password"))
    assert await page.locator("#password .notice").is_visible()
    async with node.db.read() as conn:
        assert await authenticate(conn, other, node.clock()) is None  # signed out elsewhere
    await page.goto(node.url("/wallet"))
    assert await page.locator("h1", has_text="Wallet").count() == 1  # still signed in here
    await sign_out(page)
    await sign_in(page, node, "frank", NEW_PASSWORD)
    assert page.csp_violations == []
