"""Money in a chat: a request and a transfer sent into a chat between two nodes show up in
both people's chats with their live state; paying goes through the payments API."""

from __future__ import annotations

from typing import Any

from tests.api.client import ApiClient
from tests.federation.test_payments import Pair, assert_money_conserved, balance, pair, pay
from tests.harness import eventually

__all__ = ["pair"]  # the fixture


async def _chat_with(pair: Pair) -> tuple[str, str]:
    """A one-to-one chat between alice and bob: its id on each node."""
    made = (await pair.alice.post("/api/kith/v1/chats", acct=[pair.bob_handle])).body
    await pair.alice.post(f"/api/kith/v1/chats/{made['id']}/messages", status="hi bob")

    async def arrived() -> dict[str, Any] | None:
        listed = (await pair.bob.get("/api/kith/v1/chats")).body
        return next((c for c in listed if c["uri"] == made["uri"]), None)

    return made["id"], (await eventually(arrived, interval_s=0.2))["id"]


async def _payment_message(client: ApiClient, chat_id: str, state: str) -> dict[str, Any]:
    """The chat's newest message about a payment, once that payment is in `state`."""

    async def newest() -> dict[str, Any] | None:
        messages = (await client.get(f"/api/kith/v1/chats/{chat_id}/messages")).body
        about = [m for m in messages if "kith_payment" in m]
        return about[0] if about and about[0]["kith_payment"].get("state") == state else None

    return await eventually(newest, interval_s=0.2)


async def test_a_request_in_a_chat_is_paid_there_and_both_chats_show_it_paid(
    pair: Pair,
) -> None:
    alices_chat, bobs_chat = await _chat_with(pair)
    asked = await pair.bob.post(
        "/api/kith/v1/payment_requests", chat_id=bobs_chat, amount="12.50", currency="EUR",
        note="lunch",
    )  # fmt: skip
    assert asked.status == 201, asked.body
    # Bob asked in the chat with no payer named: the payer is the other person, alice.
    assert asked.body["payer"] == pair.a.urls.base_url + "/users/alice"
    message = await _payment_message(pair.alice, alices_chat, "open")
    assert "Requested 12.50 EUR" in message["content"]
    assert asked.body["uri"] in message["content"]  # the link, for apps that know no Kith
    request_id = message["kith_payment"]["id"]
    status, paid = await pay(pair.alice, request_id, "chat-lunch")
    assert status in (200, 202), paid
    await _payment_message(pair.alice, alices_chat, "paid")
    await _payment_message(pair.bob, bobs_chat, "paid")
    assert await balance(pair.bob) == "12.50"
    await assert_money_conserved(pair.a, pair.b)


async def test_money_sent_into_a_chat_shows_there_as_completed(pair: Pair) -> None:
    alices_chat, bobs_chat = await _chat_with(pair)
    sent = await pair.alice.request(
        "POST",
        "/api/kith/v1/transfers",
        json={"chat_id": alices_chat, "amount": "5.00", "currency": "EUR", "note": "coffee"},
        headers={"Idempotency-Key": "coffee-1"},
    )
    assert sent.status in (200, 202), sent.body
    for client, chat_id in ((pair.alice, alices_chat), (pair.bob, bobs_chat)):
        message = await _payment_message(client, chat_id, "completed")
        assert message["kith_payment"]["amount"] == "5.00"
        assert "Sent 5.00 EUR" in message["content"]
    # A retry with the same key moves no more money and says nothing more in the chat.
    again = await pair.alice.request(
        "POST",
        "/api/kith/v1/transfers",
        json={"chat_id": alices_chat, "amount": "5.00", "currency": "EUR", "note": "coffee"},
        headers={"Idempotency-Key": "coffee-1"},
    )
    assert again.body["id"] == sent.body["id"]
    messages = (await pair.alice.get(f"/api/kith/v1/chats/{alices_chat}/messages")).body
    assert sum("kith_payment" in m for m in messages) == 1
    assert await balance(pair.bob) == "5.00"
    await assert_money_conserved(pair.a, pair.b)


async def test_payments_in_a_chat_name_one_of_its_members(pair: Pair) -> None:
    alices_chat, _ = await _chat_with(pair)
    outsider = pair.a.handle("carol")
    await pair.a.create_user("carol")
    answer = await pair.alice.post(
        "/api/kith/v1/transfers", chat_id=alices_chat, amount="1.00", currency="EUR",
        to=outsider,
    )  # fmt: skip
    assert answer.status == 422
    assert "not in this chat" in answer.body["error"]
    stranger = await pair.alice.post(
        "/api/kith/v1/payment_requests", chat_id="12345", amount="1.00", currency="EUR"
    )
    assert stranger.status == 404
    assert await balance(pair.alice) == "100.00"
