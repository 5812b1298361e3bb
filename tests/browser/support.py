"""What browser tests share: signing up and in as a person does, screenshots at phone and
desktop widths, and accessibility checks (axe-core when installed, and our own)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from tests.harness import Node

SCREENSHOTS = Path(__file__).parent / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
PASSWORD = "correct horse battery"
# .ci/run installs axe-core from the npm registry here (gitignored); KITH_AXE_JS may name
# another copy.
AXE_JS = Path(
    os.environ.get(
        "KITH_AXE_JS", Path(__file__).parent / ".axe" / "node_modules" / "axe-core" / "axe.min.js"
    )
)


async def new_page(browser: Any, **options: Any) -> Any:
    """A page in its own context (its own cookies: one person), failing on CSP violations."""
    context = await browser.new_context(viewport=DESKTOP, **options)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.csp_violations = violations
    return page


async def sign_up(page: Any, node: Node, username: str, password: str = PASSWORD) -> None:
    """Sign up through the form; the node signs the new person in."""
    await page.goto(node.url("/auth/sign_up"))
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.fill("#password_confirmation", password)
    await page.check("#agreement")
    await page.click("button[type=submit]:has-text('Sign up')")
    await page.wait_for_url(node.url("/"))
    assert await page.locator("h1", has_text="Home").count() == 1


async def sign_in(page: Any, node: Node, username: str, password: str = PASSWORD) -> None:
    """Sign in through the node's own OAuth flow (the sign-in page of /oauth/authorize)."""
    await page.goto(node.url("/auth/sign_in"))
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url(re.compile(re.escape(node.base_url) + r"/(\?.*)?$"))


async def sign_out(page: Any) -> None:
    await page.click("button:has-text('Sign out')")
    await page.wait_for_selector("a:has-text('Sign in')")


async def screenshot(page: Any, name: str) -> None:
    """The page at a phone's width and a desktop's, under tests/browser/screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        await page.set_viewport_size(size)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)


# Our own checks, run in the page: labels, alt text, one h1, no skipped heading level, and no
# horizontal scrolling at the current width.
_OWN_CHECKS = """() => {
  const problems = [];
  for (const control of document.querySelectorAll("input, select, textarea")) {
    if (["hidden", "submit", "button"].includes(control.type)) continue;
    const named = control.labels.length || control.getAttribute("aria-label")
      || control.getAttribute("aria-labelledby");
    if (!named) problems.push(`unlabelled ${control.tagName} ${control.name}`);
  }
  for (const image of document.querySelectorAll("img")) {
    if (!image.hasAttribute("alt")) problems.push(`image without alt: ${image.src}`);
  }
  for (const button of document.querySelectorAll("button")) {
    if (!button.textContent.trim() && !button.getAttribute("aria-label"))
      problems.push("button without text");
  }
  const headings = Array.from(document.querySelectorAll("h1, h2, h3, h4, h5, h6"));
  const ones = headings.filter((h) => h.tagName === "H1").length;
  if (ones !== 1) problems.push(`${ones} h1 elements`);
  let level = 0;
  for (const heading of headings) {
    const next = Number(heading.tagName[1]);
    if (next > level + 1) problems.push(`heading order: h${level} then h${next}`);
    level = next;
  }
  if (!document.querySelector("main")) problems.push("no main landmark");
  if (!document.querySelector("a.skip-link")) problems.push("no skip link");
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    problems.push(`horizontal scroll: ${document.documentElement.scrollWidth}px`);
  return problems;
}"""


async def check_accessibility(page: Any) -> list[str]:
    """Serious or critical axe-core violations (when installed) and our own checks' findings,
    at a phone's width and a desktop's; [] when the page passes."""
    problems: list[str] = []
    for size in (PHONE, DESKTOP):
        await page.set_viewport_size(size)
        problems += [f"{size['width']}px: {p}" for p in await page.evaluate(_OWN_CHECKS)]
    if AXE_JS.exists():
        if not await page.evaluate("() => typeof window.axe === 'object'"):
            # Evaluated through the DevTools protocol: the page's CSP does not apply to it.
            await page.evaluate(AXE_JS.read_text())
        result = await page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => `${v.id}: ${v.help} (${v.nodes.map(n => n.target.join(' ')).join(', ')})`)"
        )
        problems += [f"axe {p}" for p in result]
    return problems


def axe_available() -> bool:
    return AXE_JS.exists()


async def hold_stream(page: Any) -> asyncio.Event:
    """Keep the page's streaming connection from reaching the node until the returned event
    is set: what happens meanwhile is what a page misses between its rendering and its
    subscription."""
    listening = asyncio.Event()

    async def hold(socket: Any) -> None:
        await listening.wait()
        socket.connect_to_server()

    await page.route_web_socket(re.compile(r".*/api/v1/streaming.*"), hold)
    return listening
