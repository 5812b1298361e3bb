"""Browser tests: two live nodes (tests/harness.py) that federate over loopback, driven by
Debian's Chromium through Playwright.

Without /usr/bin/chromium (or the playwright package) these tests skip, saying why, unless
KITH_REQUIRE_BROWSER=1 (CI sets it): then they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Node, NodeFactory

CHROMIUM = Path("/usr/bin/chromium")


def _unavailable(reason: str) -> None:
    if os.environ.get("KITH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"KITH_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium (Debian's), one per test."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def two_nodes(nodes: NodeFactory) -> tuple[Node, Node]:
    """Two nodes open for sign-ups, federating with each other over loopback."""
    first = await nodes.start(instance__name="Alpha", instance__registrations="open")
    second = await nodes.start(instance__name="Beta", instance__registrations="open")
    return first, second
