"""The wallet page's catch-up (`/wallet/changes`): a payment request or transfer stored while
the page was not listening (after it was rendered, before its stream subscribed) is named to
it when the stream connects, from the mark the page was given."""

from __future__ import annotations

import json
import re

from tests.api.client import client_for
from tests.harness import Node
from tests.integration.support import session_cookie


async def _changes(node: Node, cookie: dict[str, str], since: str) -> tuple[int, dict]:
    async with node.http.get(
        "/wallet/changes", params={"since": since}, headers=cookie, allow_redirects=False
    ) as answer:
        text = await answer.text()
        return answer.status, json.loads(text) if text.startswith("{") else {}


async def test_a_request_stored_after_the_page_was_rendered_is_named_from_its_mark(
    node: Node,
) -> None:
    await client_for(node, "alice")
    bob = await client_for(node, "bob")
    cookie = await session_cookie(node, "alice")
    async with node.http.get("/wallet", headers=cookie, allow_redirects=False) as page:
        assert page.status == 200
        mark = re.search(r'data-payments-since="([0-9]+)"', await page.text())
    assert mark is not None

    asked = await bob.post(
        "/api/kith/v1/payment_requests", payer="alice", amount="4.00", currency="EUR"
    )
    assert asked.status == 201, asked.body
    status, first = await _changes(node, cookie, mark.group(1))
    assert status == 200
    assert first["payment_requests"] == [asked.body["id"]]
    assert first["transfers"] == []

    # Each answer gives the next mark; a mark is a little older than its moment, so what was
    # stored just before it is named once more, and after that no more.
    node.clock.advance(seconds=11)
    status, second = await _changes(node, cookie, first["since"])
    assert second["payment_requests"] == [asked.body["id"]]
    status, third = await _changes(node, cookie, second["since"])
    assert third == {"payment_requests": [], "transfers": [], "since": third["since"]}
    assert int(third["since"]) >= int(second["since"])

    # Bob's own wallet names it too (he asked); a bad mark or no session is refused.
    bobs = await session_cookie(node, "bob")
    assert (await _changes(node, bobs, mark.group(1)))[1]["payment_requests"] == [asked.body["id"]]
    assert (await _changes(node, cookie, "yesterday"))[0] == 422
    assert (await _changes(node, {}, mark.group(1)))[0] in (401, 303)
