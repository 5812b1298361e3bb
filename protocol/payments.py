"""Kith's payment documents on the wire: PaymentRequest, Offer{Transfer}, Accept and Reject.

Pure shapes: building the JSON and checking what peers send. Amounts travel as
`{"currency", "minor", "scale"}` with `minor` a decimal string (never a JSON number). Signing
and verifying proofs is `protocol.proofs`; what the documents mean is `payments/`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from protocol.as2 import id_of, is_http_url, same_origin
from protocol.errors import ProtocolError
from protocol.proofs import canonical_json
from protocol.vocab import AS2_CONTEXT

DATA_INTEGRITY_V2_CONTEXT = "https://w3id.org/security/data-integrity/v2"
KITH_PAYMENTS_CONTEXT = "https://kith.social/ns/payments/v1"
PAYMENT_CONTEXT = [AS2_CONTEXT, DATA_INTEGRITY_V2_CONTEXT, KITH_PAYMENTS_CONTEXT]
SUMMARY_LENGTH_MAX = 640
MINOR_DIGITS_MAX = 18
_MINOR = re.compile(rf"^[1-9][0-9]{{0,{MINOR_DIGITS_MAX - 1}}}$")
_CURRENCY = re.compile(r"^[A-Z][A-Z0-9]{2,11}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


class PaymentDocumentError(ProtocolError):
    """A payment document that is not the shape Kith's protocol defines."""


@dataclass(frozen=True)
class Amount:
    currency: str
    minor: int
    scale: int

    def to_json(self) -> dict[str, Any]:
        return {"currency": self.currency, "minor": str(self.minor), "scale": self.scale}


@dataclass(frozen=True)
class PaymentRequest:
    id: str
    payee: str
    payer: str | None
    amount: Amount
    summary: str
    published: datetime
    expires_at: datetime
    condition: str
    nonce: str
    settlement_node: str
    context: str | None = None


@dataclass(frozen=True)
class TransferOffer:
    """A payer node's offer to pay, as carried in `Offer{object: Transfer}`."""

    id: str
    payer: str
    payee: str
    amount: Amount
    expires_at: str  # as signed (compared after parsing)
    request_id: str | None
    request_digest: str | None
    condition: str | None


@dataclass(frozen=True)
class Decision:
    """A payee node's answer about one transfer: accepted with a fulfillment, rejected, or
    held (tentatively accepted: the payee has until `held_until` to take it)."""

    transfer_id: str
    accepted: bool
    fulfillment: str | None
    code: str | None
    reason: str
    decided_at: datetime | None
    held_until: datetime | None = None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise PaymentDocumentError(f"{what} is not a date-time string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PaymentDocumentError(f"{what} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise PaymentDocumentError(f"{what} has no time zone")
    return moment.astimezone(UTC)


def digest(document: dict[str, Any]) -> str:
    """The SHA-256 (hex) of a document's JCS form: how a Transfer names the signed request."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


def parse_amount_json(value: Any, what: str = "amount") -> Amount:
    if not isinstance(value, dict):
        raise PaymentDocumentError(f"{what} is not an object")
    currency, minor, scale = value.get("currency"), value.get("minor"), value.get("scale")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise PaymentDocumentError(f"{what}.currency is not a currency code")
    if not isinstance(minor, str) or not _MINOR.match(minor):
        raise PaymentDocumentError(f"{what}.minor is not a positive decimal string")
    if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= 8:
        raise PaymentDocumentError(f"{what}.scale is not an integer from 0 to 8")
    return Amount(currency, int(minor), scale)


def build_request(request: PaymentRequest) -> dict[str, Any]:
    """The unsigned AS2 document of a payment request (sign it with the payee's key)."""
    document: dict[str, Any] = {
        "@context": PAYMENT_CONTEXT,
        "type": "PaymentRequest",
        "id": request.id,
        "attributedTo": request.payee,
        "payee": request.payee,
        "amount": request.amount.to_json(),
        "summary": request.summary,
        "published": format_time(request.published),
        "expiresAt": format_time(request.expires_at),
        "condition": request.condition,
        "nonce": request.nonce,
        "settlementNode": request.settlement_node,
    }
    if request.payer is not None:
        document["payer"] = request.payer
        document["to"] = [request.payer]
    if request.context is not None:
        document["context"] = request.context
    return document


def parse_request(document: dict[str, Any]) -> PaymentRequest:
    """A received payment request, checked for shape and origins (not yet for its proof)."""
    if document.get("type") != "PaymentRequest":
        raise PaymentDocumentError("the object is not a PaymentRequest")
    request_id, payee = id_of(document.get("id")), id_of(document.get("attributedTo"))
    node = id_of(document.get("settlementNode"))
    for what, value in (("id", request_id), ("attributedTo", payee), ("settlementNode", node)):
        if not is_http_url(value):
            raise PaymentDocumentError(f"the request's {what} is not an http(s) URL")
    assert request_id
    assert payee
    assert node
    if id_of(document.get("payee")) not in (None, payee):
        raise PaymentDocumentError("the request's payee is not its author")
    if not (same_origin(request_id, payee) and same_origin(node, payee)):
        raise PaymentDocumentError(
            "the request, its payee and its settlement node differ in origin"
        )
    payer = id_of(document.get("payer"))
    if payer is not None and not is_http_url(payer):
        raise PaymentDocumentError("the request's payer is not an http(s) URL")
    summary = document.get("summary", "")
    if not isinstance(summary, str) or len(summary) > SUMMARY_LENGTH_MAX:
        raise PaymentDocumentError(f"the summary is not text of at most {SUMMARY_LENGTH_MAX}")
    condition, nonce = document.get("condition"), document.get("nonce")
    if not isinstance(condition, str) or not _TOKEN.match(condition):
        raise PaymentDocumentError("the request has no base64url condition")
    if not isinstance(nonce, str) or not _TOKEN.match(nonce):
        raise PaymentDocumentError("the request has no nonce")
    context = id_of(document.get("context"))
    return PaymentRequest(
        id=request_id,
        payee=payee,
        payer=payer,
        amount=parse_amount_json(document.get("amount")),
        summary=summary,
        published=parse_time(document.get("published"), "published"),
        expires_at=parse_time(document.get("expiresAt"), "expiresAt"),
        condition=condition,
        nonce=nonce,
        settlement_node=node,
        context=context if is_http_url(context) else None,
    )


def build_transfer(offer: TransferOffer) -> dict[str, Any]:
    """The unsigned Transfer object a payer node offers (sign it with the node's key)."""
    transfer: dict[str, Any] = {
        "@context": PAYMENT_CONTEXT,
        "type": "Transfer",
        "id": offer.id,
        "payer": offer.payer,
        "payee": offer.payee,
        "amount": offer.amount.to_json(),
        "expiresAt": offer.expires_at,
    }
    if offer.request_id is not None:
        transfer["paymentRequest"] = offer.request_id
        transfer["paymentRequestDigest"] = offer.request_digest
        transfer["condition"] = offer.condition
    return transfer


def parse_transfer(transfer: Any, sender: str) -> TransferOffer:
    """The Transfer inside an Offer from the node actor `sender`: the transfer is the sender's
    (same origin), its payer is a user there."""
    if not isinstance(transfer, dict) or transfer.get("type") != "Transfer":
        raise PaymentDocumentError("the Offer's object is not a Transfer")
    transfer_id, payer, payee = (id_of(transfer.get(key)) for key in ("id", "payer", "payee"))
    for what, value in (("id", transfer_id), ("payer", payer), ("payee", payee)):
        if not is_http_url(value):
            raise PaymentDocumentError(f"the transfer's {what} is not an http(s) URL")
    assert transfer_id
    assert payer
    assert payee
    if not (same_origin(transfer_id, sender) and same_origin(payer, sender)):
        raise PaymentDocumentError("the transfer and its payer are not the sending node's")
    expires_at = transfer.get("expiresAt")
    parse_time(expires_at, "expiresAt")
    request_id = id_of(transfer.get("paymentRequest"))
    request_digest, condition = transfer.get("paymentRequestDigest"), transfer.get("condition")
    if request_id is not None and not (
        isinstance(request_digest, str) and isinstance(condition, str)
    ):
        raise PaymentDocumentError("a transfer for a request names its digest and condition")
    return TransferOffer(
        id=transfer_id,
        payer=payer,
        payee=payee,
        amount=parse_amount_json(transfer.get("amount")),
        expires_at=expires_at,
        request_id=request_id,
        request_digest=request_digest if request_id else None,
        condition=condition if request_id else None,
    )


def build_offer(activity_id: str, node: str, to: str, signed_transfer: dict) -> dict[str, Any]:
    return {
        "@context": PAYMENT_CONTEXT,
        "type": "Offer",
        "id": activity_id,
        "actor": node,
        "to": [to],
        "object": signed_transfer,
    }


def build_accept(
    activity_id: str,
    node: str,
    to: str,
    offer: TransferOffer,
    fulfillment: str | None,
    decided_at: datetime,
) -> dict[str, Any]:
    """The payee node's unsigned acceptance of a transfer: with the fulfillment, it is the
    receipt (it names the payer, the payee and the amount credited)."""
    result: dict[str, Any] = {
        "amountCredited": offer.amount.to_json(),
        "decidedAt": format_time(decided_at),
        "payer": offer.payer,
        "payee": offer.payee,
    }
    if fulfillment is not None:
        result["fulfillment"] = fulfillment
    if offer.request_id is not None:
        result["paymentRequest"] = offer.request_id
    return {
        "@context": PAYMENT_CONTEXT,
        "type": "Accept",
        "id": activity_id,
        "actor": node,
        "to": [to],
        "object": offer.id,
        "result": result,
    }


def build_reject(
    activity_id: str, node: str, to: str, transfer_id: str, code: str, reason: str
) -> dict[str, Any]:
    return {
        "@context": PAYMENT_CONTEXT,
        "type": "Reject",
        "id": activity_id,
        "actor": node,
        "to": [to],
        "object": transfer_id,
        "code": code,
        "content": reason,
    }


def build_tentative_accept(
    activity_id: str, node: str, to: str, transfer_id: str, held_until: datetime
) -> dict[str, Any]:
    """The payee node holds the transfer for its payee to take until `held_until`; the final
    Accept or Reject follows by then."""
    return {
        "@context": PAYMENT_CONTEXT,
        "type": "TentativeAccept",
        "id": activity_id,
        "actor": node,
        "to": [to],
        "object": transfer_id,
        "endTime": format_time(held_until),
    }


def parse_decision(activity: dict[str, Any]) -> Decision:
    """An Accept, TentativeAccept or Reject of a transfer, checked for shape."""
    kind = activity.get("type")
    transfer_id = id_of(activity.get("object"))
    if kind not in ("Accept", "TentativeAccept", "Reject") or not is_http_url(transfer_id):
        raise PaymentDocumentError("not an Accept or Reject of a transfer")
    assert transfer_id
    if kind == "TentativeAccept":
        held_until = parse_time(activity.get("endTime"), "endTime")
        return Decision(transfer_id, False, None, None, "", None, held_until)
    if kind == "Reject":
        code, reason = activity.get("code"), activity.get("content", "")
        if not isinstance(code, str) or not re.match(r"^[FTR][0-9]{2}$", code):
            raise PaymentDocumentError("the Reject has no error code")
        reason = reason if isinstance(reason, str) else ""
        return Decision(transfer_id, False, None, code, reason[:SUMMARY_LENGTH_MAX], None)
    result = activity.get("result")
    if not isinstance(result, dict):
        raise PaymentDocumentError("the Accept has no result")
    fulfillment = result.get("fulfillment")
    if fulfillment is not None and not isinstance(fulfillment, str):
        raise PaymentDocumentError("the fulfillment is not a string")
    decided_at = parse_time(result.get("decidedAt"), "decidedAt")
    return Decision(transfer_id, True, fulfillment, None, "", decided_at)


def is_transfer_offer(activity: dict[str, Any]) -> bool:
    target = activity.get("object")
    return isinstance(target, dict) and target.get("type") == "Transfer"


# --- settlement between operators (reference §6.6) ------------------------------------------

REFERENCE_LENGTH_MAX = 200


@dataclass(frozen=True)
class PeerSettlement:
    """Real money the debtor node's operator paid the creditor node's, out of band, as its
    `Create{Settlement}` states it: the debtor is `attributedTo`, the creditor the one `to`."""

    id: str
    debtor: str
    creditor: str
    amount: Amount
    reference: str
    published: datetime


def build_settlement(settlement: PeerSettlement) -> dict[str, Any]:
    """The unsigned Settlement document (sign it with the debtor node's key)."""
    return {
        "@context": PAYMENT_CONTEXT,
        "type": "Settlement",
        "id": settlement.id,
        "attributedTo": settlement.debtor,
        "to": [settlement.creditor],
        "amount": settlement.amount.to_json(),
        "reference": settlement.reference,
        "published": format_time(settlement.published),
    }


def parse_settlement(document: Any, sender: str) -> PeerSettlement:
    """A Settlement sent by the node actor `sender`: its id is on the sender's origin and it is
    attributed to the sender (the proof is checked by the caller)."""
    if not isinstance(document, dict) or document.get("type") != "Settlement":
        raise PaymentDocumentError("the object is not a Settlement")
    settlement_id = id_of(document.get("id"))
    if not is_http_url(settlement_id) or not same_origin(settlement_id or "", sender):
        raise PaymentDocumentError("the settlement's id is not on the sending node")
    assert settlement_id
    if id_of(document.get("attributedTo")) != sender:
        raise PaymentDocumentError("the settlement is not attributed to the sending node")
    recipients = document.get("to")
    one = isinstance(recipients, list) and len(recipients) == 1
    creditor = id_of(recipients[0]) if one else None  # type: ignore[index]
    if not is_http_url(creditor):
        raise PaymentDocumentError("a settlement is addressed to exactly one node")
    assert creditor
    reference = document.get("reference")
    if not isinstance(reference, str) or not 0 < len(reference) <= REFERENCE_LENGTH_MAX:
        raise PaymentDocumentError(f"the reference is not text of 1 to {REFERENCE_LENGTH_MAX}")
    return PeerSettlement(
        id=settlement_id,
        debtor=sender,
        creditor=creditor,
        amount=parse_amount_json(document.get("amount")),
        reference=reference,
        published=parse_time(document.get("published"), "published"),
    )


def carries_settlement(activity: dict[str, Any]) -> bool:
    target = activity.get("object")
    return isinstance(target, dict) and target.get("type") == "Settlement"


def build_settlement_confirmation(
    activity_id: str, node: str, to: str, settlement_id: str, confirmed_at: datetime
) -> dict[str, Any]:
    """The creditor node's unsigned word that the settlement's money arrived."""
    return {
        "@context": PAYMENT_CONTEXT,
        "type": "Accept",
        "id": activity_id,
        "actor": node,
        "to": [to],
        "object": settlement_id,
        "result": {"confirmedAt": format_time(confirmed_at)},
    }


def parse_settlement_confirmation(activity: dict[str, Any]) -> tuple[str, datetime]:
    """The settlement an Accept confirms, and when the creditor confirmed it."""
    settlement_id = id_of(activity.get("object"))
    if activity.get("type") != "Accept" or not is_http_url(settlement_id):
        raise PaymentDocumentError("not an Accept of a settlement")
    assert settlement_id
    result = activity.get("result")
    if not isinstance(result, dict):
        raise PaymentDocumentError("the Accept has no result")
    return settlement_id, parse_time(result.get("confirmedAt"), "confirmedAt")
