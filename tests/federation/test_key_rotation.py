"""Ed25519 key rotation (payments reference §6.8.6): every proof still verifies after the
payee's and both nodes' keys are rotated, and payments go on, signed with the new keys by the
running nodes (no restart)."""

from __future__ import annotations

from server.identity.accounts import SIGNING_KEY_FRESH, instance_actor, rotate_signing_key
from tests.federation.test_payments import (
    Pair,
    assert_money_conserved,
    balance,
    pair,
    pay,
    settled,
)
from tests.harness import Node, eventually

__all__ = ["pair"]  # the fixture


async def _rotate(node: Node, username: str | None) -> str:
    """A new key (the node's own with no name), as `kith user rotate-key` makes one."""
    async with node.db.transaction() as conn:
        account = await instance_actor(conn) if username is None else None
        if account is None:
            account = await node.account(username or "")
        return await rotate_signing_key(conn, account.id, node.clock())


async def _request_paid(pair: Pair, amount: str, key: str) -> dict:
    created = await pair.bob.post(
        "/api/kith/v1/payment_requests", payer=pair.alice_handle, amount=amount, currency="EUR"
    )
    assert created.status == 201, created.body

    async def arrived() -> dict | None:
        listed = (await pair.alice.get("/api/kith/v1/payment_requests")).body
        return next((r for r in listed if r["uri"] == created.body["uri"]), None)

    request = await eventually(arrived)
    status, transfer = await pay(pair.alice, request["id"], key)
    assert status in (200, 202), transfer
    return await settled(pair.alice, transfer["id"])


def _signers(receipt: dict) -> set[str]:
    documents = (receipt["payment_request"], receipt["transfer"], receipt["decision"])
    return {d["proof"]["verificationMethod"] for d in documents if d and "proof" in d}


async def test_receipts_verify_after_every_key_is_rotated_and_new_payments_use_new_keys(
    pair: Pair,
) -> None:
    before = await _request_paid(pair, "3.00", "before-rotation")
    assert before["receipt"]["verified"], before["receipt"]["problems"]
    old_signers = _signers(before["receipt"])

    fragments = {
        "bob": await _rotate(pair.b, "bob"),
        "b": await _rotate(pair.b, None),
        "a": await _rotate(pair.a, None),
    }
    assert set(fragments.values()) == {"ed25519-key-2"}
    for node in (pair.a, pair.b):  # running processes read their keys again within a minute
        node.clock.advance(seconds=SIGNING_KEY_FRESH.total_seconds() + 1)

    # The actor documents publish the new key first and keep the old one.
    async with pair.a.http.get(
        pair.b.url("/users/bob"), headers={"Accept": "application/activity+json"}
    ) as response:
        methods = [m["id"] for m in (await response.json(content_type=None))["assertionMethod"]]
    assert methods == [pair.b.url("/users/bob#ed25519-key-2"), pair.b.url("/users/bob#ed25519-key")]

    # What the old keys signed still verifies, on both sides.
    for client in (pair.alice, pair.bob):
        transfers = (await client.get("/api/kith/v1/wallet/transactions")).body
        again = (await client.get(f"/api/kith/v1/transfers/{transfers[0]['id']}")).body
        assert again["receipt"]["verified"], again["receipt"]["problems"]

    # A new payment is signed with the new keys, and each node fetches the other's.
    after = await _request_paid(pair, "2.00", "after-rotation")
    assert after["state"] == "completed"
    assert after["receipt"]["verified"], after["receipt"]["problems"]
    new_signers = _signers(after["receipt"])
    assert not new_signers & old_signers
    assert all(signer.endswith("#ed25519-key-2") for signer in new_signers)
    assert await balance(pair.bob) == "5.00"
    await assert_money_conserved(pair.a, pair.b)
