"""Receipts: the signed request, the payer node's signed transfer and the payee node's signed
decision. Together they prove who paid whom, how much, for what (reference §6.3): the request
is signed by the payee, the transfer names it by digest and is signed by the payer's node, and
the Accept is signed by the payee's node and carries the fulfillment that only it knew.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nacl.signing import SigningKey

from payments.requests import fulfills
from protocol import payments as wire
from protocol.as2 import id_of, same_origin
from protocol.proofs import ProofError, proof_of, verify_object


def public_key(seed: bytes) -> bytes:
    """The Ed25519 public key of a seed (our own keys, to check our own signatures)."""
    return bytes(SigningKey(seed).verify_key)


def check(
    request: dict[str, Any] | None,
    transfer: dict[str, Any],
    decision: dict[str, Any] | None,
    keys: Mapping[str, bytes],
) -> list[str]:
    """What keeps these documents from proving the payment; empty if they prove it."""
    problems = []
    payer, payee = id_of(transfer.get("payer")) or "", id_of(transfer.get("payee")) or ""
    problems += _signed_by(transfer, keys, payer, "the transfer")
    if decision is None or decision.get("type") != "Accept":
        return [*problems, "the payment was not accepted"]
    problems += _signed_by(decision, keys, payee, "the decision")
    if id_of(decision.get("object")) != transfer.get("id"):
        problems.append("the decision is about another transfer")
    if request is not None:
        problems += _signed_by(request, keys, payee, "the request")
        problems += _request_matches(request, transfer, decision)
    return problems


def _request_matches(
    request: dict[str, Any], transfer: dict[str, Any], decision: dict[str, Any]
) -> list[str]:
    problems = []
    if transfer.get("paymentRequestDigest") != wire.digest(request):
        problems.append("the transfer does not name this request")
    if id_of(request.get("attributedTo")) != id_of(transfer.get("payee")):
        problems.append("the request's payee is not the transfer's")
    result = decision.get("result") if isinstance(decision.get("result"), dict) else {}
    if not fulfills(str(result.get("fulfillment", "")), str(request.get("condition", ""))):
        problems.append("the fulfillment does not unlock the request's condition")
    return problems


def _signed_by(
    document: dict[str, Any], keys: Mapping[str, bytes], party: str, what: str
) -> list[str]:
    """The document carries a valid proof by a key of `party`'s server."""
    try:
        method = proof_of(document)["verificationMethod"]
        key = keys.get(method)
        if key is None or not same_origin(method, party):
            return [f"{what} is signed by {method}, a key we do not know for {party}'s server"]
        verify_object(document, key)
    except ProofError as exc:
        return [f"{what}: {exc}"]
    return []
