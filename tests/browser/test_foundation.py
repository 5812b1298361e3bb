"""The web client's foundation in a real browser: signing up, in and out through the node's
own OAuth flow, cookies, CSRF, inline errors, the layout's accessibility, no CSP violation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.support import (
    PASSWORD,
    check_accessibility,
    new_page,
    screenshot,
    sign_in,
    sign_out,
    sign_up,
)
from tests.harness import Node

pytestmark = pytest.mark.slow


async def test_sign_up_sign_out_and_sign_in_with_inline_errors(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    node, _ = two_nodes
    page = await new_page(browser)
    await page.goto(node.url("/"))
    assert await check_accessibility(page) == []
    await screenshot(page, "front")

    # Bad input: every problem is said next to its field, and nothing is created.
    await page.goto(node.url("/auth/sign_up"))
    assert await check_accessibility(page) == []
    await page.fill("#username", "no spaces allowed")
    await page.fill("#password", "short")
    await page.fill("#password_confirmation", "different")
    async with page.expect_response(node.url("/auth/sign_up")) as answer:
        await page.click("button:has-text('Sign up')")
    assert (await answer.value).status == 422
    for field in ("username", "password", "password_confirmation", "agreement"):
        assert await page.locator(f"#{field}-error").is_visible(), field
    assert await page.get_attribute("#username", "aria-invalid") == "true"
    assert await page.input_value("#username") == "no spaces allowed"
    assert await check_accessibility(page) == []
    await screenshot(page, "sign-up-errors")
    async with node.db.read() as conn:
        from server.identity.accounts import find_account

        assert await find_account(conn, "nospaces") is None

    await sign_up(page, node, "alice")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["kith_session"]  # http: no __Host- prefix, no Secure
    assert session["httpOnly"]
    assert session["sameSite"] == "Lax"
    assert not session["secure"]
    assert await page.locator("nav[aria-label=Main] a[href='/chats']").count() == 1
    await sign_out(page)
    assert "kith_session" not in {c["name"] for c in await page.context.cookies()}

    # The sign-in page of the node's OAuth flow: a wrong password is said inline (401).
    await page.goto(node.url("/auth/sign_in"))
    assert await page.locator("h1", has_text="Sign in").count() == 1
    await page.fill("#username", "alice")
    await page.fill("#password", "not the password")
    async with page.expect_response(node.url("/oauth/authorize")) as answer:
        await page.click("button:has-text('Sign in')")
    assert (await answer.value).status == 401
    assert await page.locator("#sign-in-error").inner_text() == "Wrong username or password."
    assert await page.input_value("#username") == "alice"
    assert await check_accessibility(page) == []
    await screenshot(page, "sign-in-error")
    await sign_in(page, node, "alice", PASSWORD)
    assert await page.locator("h1", has_text="Home").count() == 1
    assert page.csp_violations == []


async def test_forms_refuse_posts_without_the_sessions_token_or_from_elsewhere(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    node, _ = two_nodes
    page = await new_page(browser)
    await sign_up(page, node, "carol")
    token = await page.get_attribute("input[name=csrf_token]", "value")
    request = page.context.request
    origin = {"Origin": node.base_url}
    forged = await request.post(
        node.url("/auth/sign_out"), form={"csrf_token": "forged"}, headers=origin
    )
    assert forged.status == 403
    elsewhere = await request.post(
        node.url("/auth/sign_out"),
        form={"csrf_token": token},
        headers={"Origin": "http://evil.example"},
    )
    assert elsewhere.status == 403
    await page.goto(node.url("/"))
    assert await page.locator("h1", has_text="Home").count() == 1  # still signed in
    signed_out = await request.post(
        node.url("/auth/sign_out"), form={"csrf_token": token}, headers=origin, max_redirects=0
    )
    assert signed_out.status == 303
    await page.goto(node.url("/"))
    assert await page.locator("a", has_text="Sign in").count() >= 1
