"""Chats in a real browser on two federating nodes: a group with people on both, messages and
a picture arriving live (no reload), money asked for and paid in the chat with its state
changing live on both sides, leaving, and bad input said inline."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from payments.money import Currencies
from server.wallets import deposit
from tests.browser.support import (
    check_accessibility,
    hold_stream,
    new_page,
    screenshot,
    sign_up,
)
from tests.harness import Node, NodeFactory, eventually

pytestmark = pytest.mark.slow


def _picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 90, 40)).save(out, "PNG")
    return out.getvalue()


async def _fund(node: Node, username: str, minor: int) -> None:
    account = await node.account(username)
    async with node.db.transaction() as conn:
        await deposit(conn, account, minor, Currencies().get("EUR"), node.clock())


async def _open_chat(page: Any, node: Node, title: str) -> None:
    """The chat called `title` from the chat list, once it has arrived."""

    async def listed() -> bool:
        await page.goto(node.url("/chats"))
        return await page.locator(".chat-line a", has_text=title).count() == 1

    await eventually(listed, timeout_s=15, interval_s=0.3)
    await page.click(f".chat-line a:has-text('{title}')")
    await page.wait_for_selector("ol#messages")
    await page.wait_for_function("document.body.dataset.live === '1'")


async def test_a_group_chat_across_nodes_with_live_messages_and_money(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    alpha, beta = two_nodes
    alice, carol, bob = [await new_page(browser) for _ in range(3)]
    await sign_up(alice, alpha, "alice")
    await sign_up(carol, alpha, "carol")
    await sign_up(bob, beta, "bob")
    await _fund(beta, "bob", 50_00)

    # Bad input: nobody named, or someone who does not exist.
    await alice.goto(alpha.url("/chats"))
    async with alice.expect_response(alpha.url("/chats")) as answer:
        await alice.fill("#people", "@nobody-here")
        await alice.click("button:has-text('Start chatting')")
    assert (await answer.value).status == 422
    assert "could be found" in await alice.locator("#people-error").inner_text()

    await alice.fill("#people", f"@carol @bob@{beta.domain}")
    await alice.fill("#name", "Weekend trip")
    await alice.click("button:has-text('Start chatting')")
    await alice.wait_for_selector("h1:has-text('Weekend trip')")
    await alice.wait_for_function("document.body.dataset.live === '1'")
    await _open_chat(bob, beta, "Weekend trip")
    await _open_chat(carol, alpha, "Weekend trip")
    for page in (alice, bob, carol):
        await page.evaluate("window.stillTheSamePage = true")

    # An empty message is refused inline and nothing is sent.
    async with alice.expect_response(lambda r: r.url.endswith("/messages")) as answer:
        await alice.click("#compose button:has-text('Send')")
    assert (await answer.value).status == 422
    await alice.wait_for_selector("#status-error")
    await alice.wait_for_function("document.body.dataset.live === '1'")

    # A message with a picture reaches everyone live, on both nodes.
    await alice.fill("#status", "Who is in for Saturday?")
    await alice.set_input_files(
        "#pictures", {"name": "map.png", "mimeType": "image/png", "buffer": _picture()}
    )
    await alice.click("#compose button:has-text('Send')")
    for page in (alice, bob, carol):
        message = page.locator("li.message", has_text="Who is in for Saturday?")
        await message.wait_for(timeout=20_000)
        assert await message.locator(".media img").count() == 1
    assert await alice.input_value("#status") == ""
    await bob.fill("#status", "Count me in!")
    await bob.click("#compose button:has-text('Send')")
    for page in (alice, carol):
        await page.locator("li.message", has_text="Count me in!").wait_for(timeout=20_000)
    for page in (bob, carol):
        assert await page.evaluate("window.stillTheSamePage") is True
    assert await check_accessibility(bob) == []
    await screenshot(bob, "chat")

    # Alice asks bob for money in the chat: a bad amount first, said inline.
    await alice.click("summary:has-text('Money')")
    await alice.select_option("#ask-person", label=f"bob (@bob@{beta.domain})")
    await alice.fill("#ask-amount", "12.345")
    await alice.click("button:has-text('Send the request')")
    await alice.wait_for_selector("#amount-error")
    assert await alice.is_visible("#ask-amount")  # the money panel stays open with the error
    await alice.select_option("#ask-person", label=f"bob (@bob@{beta.domain})")
    await alice.fill("#ask-amount", "12.50")
    await alice.fill("#ask-note", "train tickets")
    await alice.click("button:has-text('Send the request')")
    await alice.wait_for_selector("li.message .chat-payment:has-text('waiting to be paid')")
    await alice.wait_for_function("document.body.dataset.live === '1'")
    await alice.evaluate("window.stillTheSamePage = true")

    # Bob sees it live with a Pay button, pays after confirming; alice sees it paid live.
    pay = bob.locator("li.message a:has-text('Pay 12.50 EUR')")
    await pay.wait_for(timeout=20_000)
    await pay.click()
    await bob.wait_for_selector("h1:has-text('Pay 12.50 EUR?')")
    assert await check_accessibility(bob) == []
    await screenshot(bob, "chat-pay")
    await bob.click("button:has-text('Pay 12.50 EUR')")
    await bob.wait_for_selector("li.message .chat-payment:has-text('paid')", timeout=20_000)
    await alice.locator("li.message .payment-state", has_text="paid").wait_for(timeout=20_000)
    assert await alice.evaluate("window.stillTheSamePage") is True

    # The chat list shows the chat with what was said last; carol leaves.
    await carol.goto(alpha.url("/chats"))
    assert await check_accessibility(carol) == []
    await screenshot(carol, "chats")
    await carol.click(".chat-line a:has-text('Weekend trip')")
    await carol.click("summary:has-text('People and name')")
    await carol.click("a:has-text('Leave this chat')")
    await carol.click("button:has-text('Leave the chat')")
    await carol.wait_for_selector("h1:has-text('Chats')")
    await alice.fill("#status", "Carol left, the two of us then")
    await alice.click("#compose button:has-text('Send')")
    await bob.locator("li.message", has_text="the two of us").wait_for(timeout=20_000)
    await carol.goto(alpha.url("/chats"))
    await carol.click(".chat-line a:has-text('Weekend trip')")
    assert await carol.locator("li.message", has_text="the two of us").count() == 0
    assert await carol.locator("text=You left this chat").count() == 1
    for page in (alice, bob, carol):
        assert page.csp_violations == []


async def test_a_message_that_arrives_before_the_stream_listens_is_shown_all_the_same(
    browser: Any, nodes: NodeFactory
) -> None:
    node = await nodes.start(instance__registrations="open")
    kim = await new_page(browser)
    await sign_up(kim, node, "kim")
    await node.create_user("lou")
    headers = {"Authorization": f"Bearer {await node.create_token('lou', 'read write')}"}

    async def lou_posts(path: str, body: dict) -> dict:
        async with node.http.post(path, json=body, headers=headers) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()

    chat = await lou_posts("/api/kith/v1/chats", {"acct": ["kim"]})
    await lou_posts(f"/api/kith/v1/chats/{chat['id']}/messages", {"status": "first"})
    # Hold the chat page's stream until the next message is stored: the page was rendered
    # without it and its subscription comes too late to hear of it.
    listening = await hold_stream(kim)
    await kim.goto(node.url(f"/chats/{chat['id']}"))
    await kim.locator("#messages li", has_text="first").wait_for()
    await lou_posts(f"/api/kith/v1/chats/{chat['id']}/messages", {"status": "while not listening"})
    assert await kim.locator("#messages li", has_text="while not listening").count() == 0
    listening.set()
    await kim.locator("#messages li", has_text="while not listening").wait_for()
