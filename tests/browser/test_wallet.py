"""The wallet in a real browser, across two live nodes: asking for money with a link and a QR
code, paying it on the other node through the confirmation step, both wallets updating without
a reload, the receipt's signatures verifying, amounts in the reader's language, bad input said
inline with nothing changed, and a double submit paying once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select, update

from payments import peers
from payments.money import Currencies
from payments.tables import payment_requests, settlements
from server.storage.tables import accounts
from server.wallets import deposit
from tests.browser.support import (
    check_accessibility,
    hold_stream,
    new_page,
    screenshot,
    sign_up,
)
from tests.harness import Node, NodeFactory

pytestmark = pytest.mark.slow
EUR = Currencies().get("EUR")
NBSP = "\u00a0"
LONG_NAME = "Dave" + "Wolfeschlegelsteinhausenbergerdorff" * 2


async def fund(node: Node, username: str, minor: int) -> None:
    """An operator's deposit into a user's wallet."""
    account = await node.account(username)
    async with node.db.transaction() as conn:
        await deposit(conn, account, minor, EUR, node.clock())


async def allow_debts_from(creditor: Node, debtor: Node) -> None:
    """The creditor's operator lets the debtor node owe it (payments from its users)."""
    async with creditor.db.transaction() as conn:
        await peers.set_limits(conn, debtor.domain, "EUR", 1000_00, creditor.clock())


async def count(node: Node, table: Any, *where: Any) -> int:
    async with node.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def mark_page(page: Any) -> None:
    """A marker that a page load would wipe out: its survival proves no reload happened."""
    await page.evaluate("() => { window.kithTestMarker = 1; }")


async def not_reloaded(page: Any) -> bool:
    return await page.evaluate("() => window.kithTestMarker === 1")


async def submit(page: Any, node: Node, selector: str, path: str) -> int:
    """Click a submit button and return the status of the POST it makes."""
    async with page.expect_response(
        lambda r: r.url.split("?")[0] == node.url(path) and r.request.method == "POST"
    ) as answer:
        await page.click(selector)
    return (await answer.value).status


async def test_a_request_paid_on_another_node_updates_both_wallets_live_with_a_verified_receipt(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    alpha, beta = two_nodes
    alice = await new_page(browser)
    bob = await new_page(browser, locale="de-DE")  # Bob reads 1.234,56
    await sign_up(alice, alpha, "alice")
    await sign_up(bob, beta, "bob")
    await fund(beta, "bob", 100_00)
    await allow_debts_from(alpha, beta)

    await bob.goto(beta.url("/wallet"))
    assert await bob.locator("#balances .amount").inner_text() == f"100,00{NBSP}EUR"
    await mark_page(bob)

    # Alice asks; bad input first: said next to the fields, and no request is made.
    await alice.goto(alpha.url("/wallet"))
    assert await check_accessibility(alice) == []
    await screenshot(alice, "wallet-empty")
    await alice.fill("#ask-payer", f"@nobody@{beta.domain}")
    await alice.fill("#ask-amount", "12.345")
    assert await submit(alice, alpha, "button:has-text('Request')", "/wallet/requests") == 422
    assert "No one called" in await alice.locator("#payer-error").inner_text()
    assert "2 decimal places" in await alice.locator("#amount-error").inner_text()
    assert await alice.get_attribute("#ask-amount", "aria-invalid") == "true"
    assert await alice.input_value("#ask-amount") == "12.345"
    assert await count(alpha, payment_requests) == 0
    assert await check_accessibility(alice) == []
    await screenshot(alice, "wallet-request-errors")

    await alice.fill("#ask-payer", f"@bob@{beta.domain}")
    await alice.fill("#ask-amount", "12.50")
    await alice.fill("#ask-currency", "EUR")
    await alice.fill("#ask-note", "Dinner at the harbour")
    await alice.select_option("#ask-expires_in", str(86400))
    await alice.click("button:has-text('Request')")
    await alice.wait_for_url(re.compile(r".*/wallet/requests/[0-9]+$"))
    link = await alice.input_value("#request-link")
    assert link.startswith(alpha.url("/payments/requests/"))
    qr = await alice.context.request.get(alpha.url(await alice.get_attribute(".qr img", "src")))
    assert qr.status == 200
    assert qr.headers["content-type"] == "image/svg+xml"
    assert await alice.evaluate("() => document.querySelector('.qr img').naturalWidth > 0")
    assert await check_accessibility(alice) == []
    await screenshot(alice, "wallet-request")
    request_id = alice.url.rsplit("/", 1)[1]

    await alice.goto(alpha.url("/wallet"))
    await mark_page(alice)
    assert await alice.get_attribute(f"#payment-{request_id}", "data-state") == "open"

    # On Beta the request arrives in Bob's open wallet, then he pays it through the step.
    incoming = bob.locator("#waiting .request")
    await incoming.wait_for()
    assert "12,50" in await incoming.inner_text()
    assert "Dinner at the harbour" in await incoming.inner_text()
    await incoming.locator("button:has-text('Pay')").click()
    confirm = incoming.locator("button:has-text('Confirm: pay')")
    await confirm.wait_for()
    assert "Pay 12,50" in await incoming.locator(".confirm-question").inner_text()
    assert await check_accessibility(bob) == []
    await screenshot(bob, "wallet-pay-confirm")
    await confirm.click()

    # Both wallets follow the payment as it settles, without a reload.
    await bob.locator("#waiting .request[data-state=paid]").wait_for()
    await bob.locator("#balances .amount", has_text=f"87,50{NBSP}EUR").wait_for()
    await alice.locator(f"#payment-{request_id}[data-state=paid]").wait_for()
    await alice.locator("#balances .amount", has_text="12.50").wait_for()
    await alice.locator("#recent .transfer[data-state=completed]").wait_for()
    assert await not_reloaded(alice)
    assert await not_reloaded(bob)
    assert await check_accessibility(alice) == []
    await screenshot(alice, "wallet-paid")
    await screenshot(bob, "wallet-payer")

    # The receipt, on both sides: who paid whom, when, and the signatures checked now.
    await bob.click("#waiting .request a:has-text('Receipt')")
    await bob.wait_for_url(re.compile(r".*/wallet/transfers/[0-9]+$"))
    result = bob.locator("#verification-result")
    assert await result.get_attribute("data-verified") == "true"
    assert "The signatures verify" in await result.inner_text()
    facts = await bob.locator(".receipt-facts").inner_text()
    for fact in ("bob@", "alice@", "Dinner at the harbour"):
        assert fact in facts
    assert await check_accessibility(bob) == []
    await screenshot(bob, "receipt")
    await alice.click("#recent .transfer a:has-text('Receipt')")
    await alice.wait_for_url(re.compile(r".*/wallet/transfers/[0-9]+$"))
    assert await alice.get_attribute("#verification-result", "data-verified") == "true"

    # A second request, declined on Beta after its confirmation step: Alice sees it live.
    await alice.goto(alpha.url("/wallet"))
    await alice.fill("#ask-payer", f"@bob@{beta.domain}")
    await alice.fill("#ask-amount", "3")
    await alice.click("button:has-text('Request')")
    await alice.wait_for_url(re.compile(r".*/wallet/requests/[0-9]+$"))
    second = alice.url.rsplit("/", 1)[1]
    await bob.goto(beta.url("/wallet"))
    asked = bob.locator("#waiting .request[data-state=open]")
    await asked.wait_for()
    await asked.locator("button:has-text('Decline')").click()
    await asked.locator("button:has-text('Confirm: decline')").click()
    await bob.locator("#waiting .request[data-state=declined]").wait_for()
    await alice.locator(f"#payment-{second}[data-state=declined]").wait_for()
    assert await bob.locator("#balances .amount").inner_text() == f"87,50{NBSP}EUR"
    assert alice.csp_violations == []
    assert bob.csp_violations == []


async def test_money_held_for_acceptance_is_accepted_or_sent_back_from_the_wallet(
    browser: Any, nodes: NodeFactory
) -> None:
    node = await nodes.start(instance__registrations="open", payments__transfer_acceptance_hours=24)
    gina, hal = await new_page(browser), await new_page(browser)
    await sign_up(gina, node, "gina")
    await sign_up(hal, node, "hal")
    await fund(node, "gina", 50_00)
    await hal.goto(node.url("/wallet"))
    await mark_page(hal)
    for amount in ("10", "5"):
        await gina.goto(node.url("/wallet"))
        await gina.fill("#send-to", "hal")
        await gina.fill("#send-amount", amount)
        await gina.click("button:has-text('Send…')")
        await gina.click("button:has-text('Confirm: send')")
        await gina.locator("#send .notice").wait_for()
    held = hal.locator("#waiting .transfer[data-state=awaiting_acceptance]")
    await held.nth(1).wait_for()  # both arrive in Hal's open wallet
    assert "Waiting for you to accept it" in await held.first.inner_text()
    assert "15.00" in await hal.locator("#balances").inner_text()  # incoming
    assert await check_accessibility(hal) == []
    await screenshot(hal, "wallet-held")
    await held.filter(has_text="10.00").locator("button:has-text('Accept')").click()
    await hal.locator("#waiting .transfer[data-state=completed]").wait_for()
    await held.filter(has_text="5.00").locator("button:has-text('Send it back')").click()
    await hal.locator("#waiting .transfer[data-state=rejected]").wait_for()
    assert await hal.locator("#balances .amount").inner_text() == f"10.00{NBSP}EUR"
    assert await not_reloaded(hal)
    await gina.goto(node.url("/wallet"))
    assert await gina.locator("#balances .amount").inner_text() == f"40.00{NBSP}EUR"
    assert hal.csp_violations == []


async def test_sending_refuses_bad_input_inline_and_a_double_submit_pays_once(
    browser: Any, two_nodes: tuple[Node, Node]
) -> None:
    alpha, beta = two_nodes
    carol = await new_page(browser)
    await sign_up(carol, alpha, "carol")
    await sign_up(await new_page(browser), beta, "dave")
    async with beta.db.transaction() as conn:  # a long name must not break the layout
        await conn.execute(
            update(accounts).where(accounts.c.username == "dave").values(display_name=LONG_NAME)
        )
    await fund(alpha, "carol", 20_00)
    await allow_debts_from(beta, alpha)
    await carol.goto(alpha.url("/wallet"))

    # Too much, nobody, a wrong amount: said inline (422), nothing moves.
    for to, amount, field, says in (
        (f"@dave@{beta.domain}", "25", "amount", "You have only 20.00"),
        (f"@nobody@{beta.domain}", "1", "to", "No one called"),
        ("carol", "1", "to", "That is you"),
        (f"@dave@{beta.domain}", "1,2,3", "amount", "without thousands separators"),
        (f"@dave@{beta.domain}", "0", "amount", "more than zero"),
    ):
        await carol.fill("#send-to", to)
        await carol.fill("#send-amount", amount)
        assert await submit(carol, alpha, "button:has-text('Send…')", "/wallet/send") == 422
        assert says in await carol.locator(f"#{field}-error").inner_text(), (to, amount)
        assert await carol.get_attribute(f"#send-{field}", "aria-invalid") == "true"
    assert await count(alpha, settlements) == 0
    assert await check_accessibility(carol) == []
    await screenshot(carol, "wallet-send-errors")

    await carol.fill("#send-to", f"@dave@{beta.domain}")
    await carol.fill("#send-amount", "5")
    await carol.fill("#send-note", "For the tickets")
    await carol.click("button:has-text('Send…')")
    await carol.locator("#send .confirm").wait_for()
    assert "Send 5.00" in await carol.locator("#send-confirm-question").inner_text()
    form = {
        name: await carol.get_attribute(f"#send form input[name={name}]", "value")
        for name in ("csrf_token", "to", "amount", "currency", "note", "key")
    }
    # The confirmation sent twice (a double click, a retry): one payment.
    for _ in range(2):
        answer = await carol.context.request.post(
            alpha.url("/wallet/send"),
            form={**form, "confirm": "1"},
            headers={"Origin": alpha.base_url},
            max_redirects=0,
        )
        assert answer.status == 303
    assert await count(alpha, settlements) == 1
    await carol.goto(alpha.url("/wallet"))
    await carol.locator("#recent .transfer[data-state=completed]").wait_for()
    assert await carol.locator("#balances .amount").inner_text() == f"15.00{NBSP}EUR"
    assert LONG_NAME in await carol.locator("#recent .transfer").inner_text()
    await fund(alpha, "carol", 9_999_999_999_999_00)  # and neither must a long amount
    await carol.reload()
    assert "10,000,000,000,014.00" in await carol.locator("#balances .amount").inner_text()
    assert await check_accessibility(carol) == []  # no sideways scrolling at 390 px either
    await screenshot(carol, "wallet-long")

    # The history: filtered, bad filters said inline, and the same payments as CSV.
    await carol.goto(alpha.url("/wallet/history?direction=outgoing&currency=EUR"))
    assert await carol.locator("#history .transfer").count() == 1
    assert await check_accessibility(carol) == []
    await screenshot(carol, "wallet-history")
    await carol.goto(alpha.url("/wallet/history?direction=incoming"))
    assert await carol.locator("#history .transfer").count() == 0
    answer = await carol.goto(alpha.url("/wallet/history?state=lost"))
    assert answer.status == 422
    assert "State is one of" in await carol.locator(".error").inner_text()
    csv = await carol.context.request.get(alpha.url("/wallet/history.csv?direction=outgoing"))
    assert csv.headers["content-type"].startswith("text/csv")
    lines = (await csv.text()).strip().splitlines()
    assert len(lines) == 2
    assert ",outgoing,completed,5.00,EUR," in lines[1]
    assert carol.csp_violations == []


async def _ivy_signed_in(browser: Any, nodes: NodeFactory) -> tuple[Node, Any]:
    """A node, and Ivy signed up on it in a page of her own."""
    node = await nodes.start(instance__registrations="open")
    ivy = await new_page(browser)
    await sign_up(ivy, node, "ivy")
    return node, ivy


async def _jon_asks_ivy(node: Node, amount: str, **fields: str) -> dict[str, Any]:
    """Jon (made now if new) asks Ivy for money through the payments API."""
    if "jon" not in node.users:
        await node.create_user("jon")
    token = await node.create_token("jon", "read write")
    async with node.http.post(
        "/api/kith/v1/payment_requests",
        json={"payer": "ivy", "amount": amount, "currency": "EUR", **fields},
        headers={"Authorization": f"Bearer {token}"},
    ) as answer:
        assert answer.status == 201, await answer.text()
        return await answer.json()


async def test_a_request_that_arrives_before_the_stream_listens_is_shown_all_the_same(
    browser: Any, nodes: NodeFactory
) -> None:
    node, ivy = await _ivy_signed_in(browser, nodes)
    # Hold the wallet page's stream until the request is stored: the page was rendered
    # without it and its subscription comes too late to hear of it.
    listening = await hold_stream(ivy)
    await ivy.goto(node.url("/wallet"))
    await mark_page(ivy)
    await _jon_asks_ivy(node, "6.00", note="Train tickets")
    assert await ivy.locator("#waiting .request").count() == 0
    listening.set()
    waiting = ivy.locator("#waiting .request[data-state=open]")
    await waiting.wait_for()
    assert "Train tickets" in await waiting.inner_text()
    assert await not_reloaded(ivy)


async def test_a_confirmation_step_stays_when_the_stream_repeats_what_the_page_shows(
    browser: Any, nodes: NodeFactory
) -> None:
    node, ivy = await _ivy_signed_in(browser, nodes)
    asked = await _jon_asks_ivy(node, "2.00")
    await ivy.goto(node.url("/wallet"))
    request = ivy.locator(f"#payment-{asked['id']}")
    await request.locator("button:has-text('Decline')").click()
    confirm = request.locator("button:has-text('Confirm: decline')")
    await confirm.wait_for()
    # The stream tells of the request as it is (an event that came late): the step stays.
    payload = {"id": asked["id"], "state": "open"}
    await ivy.evaluate(
        """payload => document.dispatchEvent(new CustomEvent("kith:stream", {
            detail: { event: "kith:payment_request", payload: JSON.stringify(payload) },
        }))""",
        payload,
    )
    await ivy.wait_for_timeout(1000)  # what a refresh would take, several times over
    assert await confirm.count() == 1
    await confirm.click()
    await ivy.locator(f"#payment-{asked['id']}[data-state=declined]").wait_for()
