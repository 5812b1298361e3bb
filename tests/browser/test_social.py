"""The social half of the web client's acceptance, in a real browser on two federating nodes:
sign up on each, find and follow across nodes, a post arriving live (no reload), favourite,
pictures with a content warning, replies, follow requests, infinite scroll, inline errors."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import update

from server.storage.tables import accounts
from tests.browser.support import (
    PASSWORD,
    check_accessibility,
    new_page,
    screenshot,
    sign_in,
    sign_up,
)
from tests.harness import Node, eventually

pytestmark = pytest.mark.slow


def _picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 120, 80)).save(out, "PNG")
    return out.getvalue()


async def _follow(page: Any, node: Node, handle: str) -> None:
    """Find `@handle` by search (looked up on its server) and follow from its profile."""
    await page.goto(node.url("/search"))
    await page.fill("#q", f"@{handle}")
    await page.click("button:has-text('Search')")
    await page.click(f"ul.people a:has-text('{handle.split('@')[0]}')")
    await page.wait_for_selector("h1#profile-name")
    await page.click("button:has-text('Follow')")


async def test_follow_across_nodes_post_arrives_live_and_is_favourited(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    alpha, beta = two_nodes
    alice = await new_page(browser)
    bob = await new_page(browser)
    await sign_up(alice, alpha, "alice")
    await sign_up(bob, beta, "bob")

    await _follow(bob, beta, f"alice@{alpha.domain}")
    await screenshot(bob, "profile-remote")

    # Alice's node accepts; the button says so once the Accept is back.
    async def followed() -> bool:
        await bob.reload()
        return await bob.locator("button:has-text('Unfollow')").count() == 1

    await eventually(followed, timeout_s=15, interval_s=0.3)
    assert await check_accessibility(bob) == []

    # Bob watches his home timeline; nothing reloads it.
    await bob.goto(beta.url("/"))
    await bob.wait_for_function("() => document.body.dataset.live === '1'")
    await bob.evaluate("window.stillTheSamePage = true")

    # Bad input in the compose form: said inline (422), nothing published.
    await alice.goto(alpha.url("/"))
    await alice.wait_for_function("() => document.body.dataset.live === '1'")
    async with alice.expect_response(alpha.url("/statuses")) as answer:
        await alice.click("#compose button:has-text('Post')")
    assert (await answer.value).status == 422
    assert await alice.locator("#status-error").inner_text() == "Write something or add a picture."
    assert await alice.locator("#feed article").count() == 0
    await screenshot(alice, "compose-error")

    await alice.fill("#status-text", "Hello from Alpha, friends on Beta!")
    await alice.click("#compose button:has-text('Post')")
    await alice.wait_for_selector("#feed article:has-text('Hello from Alpha')")
    assert await alice.input_value("#status-text") == ""  # a fresh form

    card = bob.locator("#feed article", has_text="Hello from Alpha")
    await card.wait_for(timeout=20_000)
    assert await bob.evaluate("window.stillTheSamePage") is True
    favourite = card.locator("button:has-text('Favourite')")
    await favourite.click()
    await bob.wait_for_selector("#feed article button[aria-pressed=true]:has-text('Favourite')")
    assert await bob.evaluate("window.stillTheSamePage") is True
    assert await check_accessibility(bob) == []
    await screenshot(bob, "home-live")

    # Alice hears of it: the nav's count goes up live, the notification says who.
    await alice.wait_for_selector("[data-unread]:not([hidden])", timeout=20_000)
    await alice.goto(alpha.url("/notifications"))
    await alice.wait_for_selector("text=favourited your post")
    assert await check_accessibility(alice) == []
    await screenshot(alice, "notifications")
    assert alice.csp_violations == []
    assert bob.csp_violations == []


async def test_pictures_content_warnings_replies_and_the_thread(
    browser: Any, two_nodes: tuple[Node, Node], tmp_path: Any
) -> None:
    alpha, _ = two_nodes
    alice = await new_page(browser)
    await sign_up(alice, alpha, "alice")
    picture = tmp_path / "garden.png"
    picture.write_bytes(_picture())
    await alice.goto(alpha.url("/"))
    await alice.fill("#status-text", "Our garden this morning")
    await alice.click("summary:has-text('Content warning')")
    await alice.fill("#spoiler_text", "Vegetables")
    await alice.set_input_files("#media", str(picture))
    await alice.fill("#media_description", "A green rectangle of lettuce")
    await alice.click("#compose button:has-text('Post')")
    card = alice.locator("#feed article", has_text="Vegetables")
    await card.wait_for()
    await card.locator("summary").click()
    image = card.locator("img[alt='A green rectangle of lettuce']")
    await image.wait_for()
    assert (await image.get_attribute("src")).startswith(alpha.url("/media/"))

    carol = await new_page(browser)
    await sign_up(carol, alpha, "carol")
    await carol.goto(alpha.url("/local"))
    await carol.click("article:has-text('Vegetables') a.meta")
    await carol.wait_for_selector("h1:has-text('Post by alice')")
    assert await carol.input_value("#status-text") == "@alice "
    await carol.fill("#status-text", "@alice Lovely!")
    await carol.click("#reply button:has-text('Reply')")
    await carol.wait_for_selector("#feed article:has-text('Lovely!')")
    await carol.click("article.focused button:has-text('Bookmark')")
    await carol.wait_for_selector("article.focused button[aria-pressed=true]:has-text('Bookmark')")
    await carol.reload()
    assert await carol.locator("#feed article", has_text="Lovely!").count() == 1
    assert await check_accessibility(carol) == []
    await screenshot(carol, "status-thread")


async def test_follow_requests_to_a_locked_account_and_infinite_scroll(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    alpha, beta = two_nodes
    carol_account = await alpha.create_user("carol", password=PASSWORD)
    async with alpha.db.transaction() as conn:  # locked, as the settings page will make it
        await conn.execute(
            update(accounts).where(accounts.c.id == carol_account.id).values(is_locked=True)
        )
    carol_token = await alpha.create_token("carol")
    for n in range(25):
        async with alpha.http.post(
            "/api/v1/statuses",
            json={"status": f"note number {n}"},
            headers={"Authorization": f"Bearer {carol_token}"},
        ) as response:
            assert response.status == 200
    dave = await new_page(browser)
    await sign_up(dave, beta, "dave")
    await _follow(dave, beta, f"carol@{alpha.domain}")
    await dave.wait_for_selector("text=Follow requested")

    carol = await new_page(browser)
    await sign_in(carol, alpha, "carol")  # the node's own OAuth flow
    await carol.goto(alpha.url("/notifications"))
    request = carol.locator("li.person", has_text="dave")
    await request.wait_for(timeout=20_000)
    await request.locator("button:has-text('Accept')").click()
    await request.wait_for(state="hidden")

    async def accepted() -> bool:
        await dave.reload()
        return await dave.locator("button:has-text('Unfollow')").count() == 1

    await eventually(accepted, timeout_s=15, interval_s=0.3)

    # The local timeline pages itself in as it is scrolled.
    await carol.goto(alpha.url("/local"))
    assert await carol.locator("#feed article").count() == 20
    await carol.locator("[data-more]").scroll_into_view_if_needed()
    await carol.wait_for_function("() => document.querySelectorAll('#feed article').length === 25")
    assert await carol.locator("[data-more]").count() == 0
    assert await check_accessibility(carol) == []
    await screenshot(carol, "local")
    await carol.goto(alpha.url("/@carol"))
    await screenshot(carol, "profile")
    assert re.search(r"25\s*</strong>\s*posts", await carol.content())
    await carol.emulate_media(color_scheme="dark")
    await carol.goto(alpha.url("/"))
    await screenshot(carol, "home-dark")
