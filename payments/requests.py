"""Payment requests: their states, their expiry, and the hash-lock that makes a receipt.

A request is single-use: `open` until it ends exactly once as `paid`, `declined`, `expired` or
`cancelled`. Its `condition` is the SHA-256 of a 32-byte secret (the fulfillment) that only the
payee's node knows until it accepts a payment: the fulfillment in a signed Accept proves that
payment was accepted for this request (reference §6.3, as Interledger and BOLT11 do).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.ledger import NewId
from payments.parties import (
    NodeKey,
    Party,
    PaymentError,
    Policy,
    SettlementRejected,
    Signer,
    check_amount,
    currency_of,
    utc,
    verify_proof,
)
from payments.tables import payment_requests
from protocol import payments as wire
from protocol.proofs import sign_object

DEFAULT_EXPIRY = timedelta(hours=1)
MAXIMUM_EXPIRY = timedelta(days=30)
MINIMUM_EXPIRY = timedelta(minutes=1)
FULFILLMENT_BYTES = 32


class RequestState(StrEnum):
    OPEN = "open"
    PAID = "paid"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# Every state but `open` is terminal.
_NEXT = {RequestState.OPEN: frozenset(RequestState) - {RequestState.OPEN}}


class InvalidTransition(ValueError):
    """A request asked to move where its state machine does not go."""


def transition(current: RequestState, target: RequestState) -> RequestState:
    """The new state, if `current` may move to `target`."""
    if target not in _NEXT.get(current, frozenset()):
        raise InvalidTransition(f"a {current.value} request cannot become {target.value}")
    return target


def state_at(state: RequestState, expires_at: datetime, now: datetime) -> RequestState:
    """What the request is at `now` on the payee node's clock: open ones expire at
    `expires_at` (inclusive), whatever the payer's clock says."""
    if state is RequestState.OPEN and now >= expires_at:
        return RequestState.EXPIRED
    return state


def expiry_for(now: datetime, requested: timedelta | None = None) -> datetime:
    """When a new request expires: one hour by default, never unlimited."""
    lifetime = DEFAULT_EXPIRY if requested is None else requested
    if not MINIMUM_EXPIRY <= lifetime <= MAXIMUM_EXPIRY:
        raise ValueError(f"a request lasts between {MINIMUM_EXPIRY} and {MAXIMUM_EXPIRY.days} days")
    return now + lifetime


def new_fulfillment() -> bytes:
    """The payee node's secret for one request."""
    return secrets.token_bytes(FULFILLMENT_BYTES)


def condition_of(fulfillment: bytes) -> str:
    """The request's `condition`: base64url (no padding) of SHA-256 of the fulfillment."""
    return _b64(hashlib.sha256(fulfillment).digest())


def encode_fulfillment(fulfillment: bytes) -> str:
    return _b64(fulfillment)


def fulfills(encoded_fulfillment: str, condition: str) -> bool:
    """Whether a fulfillment (as sent, base64url) unlocks `condition`."""
    try:
        padded = encoded_fulfillment + "=" * (-len(encoded_fulfillment) % 4)
        fulfillment = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (ValueError, TypeError):
        return False
    if len(fulfillment) != FULFILLMENT_BYTES:
        return False
    return hmac.compare_digest(condition_of(fulfillment), condition)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- stored requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    id: int
    uri: str
    payee_uri: str
    payer_uri: str | None
    payee_account_id: int | None
    payer_account_id: int | None
    amount: int
    currency: str
    summary: str
    condition: str
    settlement_node: str
    stored_state: RequestState
    paid_by: str | None
    document: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    is_ours: bool

    def state(self, now: datetime) -> RequestState:
        return state_at(self.stored_state, self.expires_at, now)


async def create_request(
    conn: AsyncConnection,
    node: NodeKey,
    payee: Party,
    signer: Signer,
    payer: Party | None,
    amount: wire.Amount,
    summary: str,
    expires_at: datetime,
    now: datetime,
    new_id: NewId,
    context: str | None = None,
) -> RequestRecord:
    """A new single-use request by a local payee, signed with their key."""
    if payer is not None and payer.uri == payee.uri:
        raise PaymentError("you cannot request money from yourself")
    check_amount(amount.minor)
    row_id = new_id(now)
    fulfillment = new_fulfillment()
    request = wire.PaymentRequest(
        # Unguessable: the link is what lets someone see (and pay) the request.
        id=f"{node.base_url}/payments/requests/{secrets.token_urlsafe(16)}",
        payee=payee.uri,
        payer=payer.uri if payer else None,
        amount=amount,
        summary=summary,
        published=now,
        expires_at=expires_at,
        condition=condition_of(fulfillment),
        nonce=secrets.token_urlsafe(18),
        settlement_node=node.actor,
        context=context,
    )
    document = sign_object(
        wire.build_request(request), signer.seed, signer.key_id, wire.format_time(now)
    )
    await conn.execute(
        payment_requests.insert().values(
            id=row_id,
            uri=request.id,
            payee_uri=payee.uri,
            payer_uri=request.payer,
            payee_account_id=payee.account_id,
            payer_account_id=payer.account_id if payer else None,
            currency=amount.currency,
            amount=amount.minor,
            summary=summary,
            condition=request.condition,
            fulfillment=encode_fulfillment(fulfillment),
            settlement_node=node.actor,
            state=RequestState.OPEN.value,
            document=json.dumps(document),
            created_at=now,
            expires_at=wire.parse_time(document["expiresAt"], "expiresAt"),
            updated_at=now,
        )
    )
    found = await request_by_uri(conn, request.id)
    assert found is not None
    return found


async def receive_request(
    conn: AsyncConnection,
    document: dict[str, Any],
    payee_keys: Mapping[str, bytes],
    payer: Party,
    policy: Policy,
    now: datetime,
    new_id: NewId,
) -> RequestRecord:
    """A remote payee's request for a local payer, kept once its proof verifies with one of
    the payee's published keys."""
    request = wire.parse_request(document)
    verify_proof(document, payee_keys, request.payee)
    if request.payer not in (None, payer.uri):
        raise SettlementRejected("the request is for someone else")
    currency = currency_of(policy, request.amount)
    if currency is None:
        raise SettlementRejected(f"{request.amount.currency} is not a currency this node knows")
    known = await request_by_uri(conn, request.id)
    if known is not None:
        if wire.digest(known.document) != wire.digest(document):
            raise SettlementRejected("a different request was already received with this id")
        return known
    await conn.execute(
        payment_requests.insert().values(
            id=new_id(now),
            uri=request.id,
            payee_uri=request.payee,
            payer_uri=payer.uri,
            payee_account_id=None,
            payer_account_id=payer.account_id,
            currency=request.amount.currency,
            amount=request.amount.minor,
            summary=request.summary,
            condition=request.condition,
            fulfillment=None,
            settlement_node=request.settlement_node,
            state=RequestState.OPEN.value,
            document=json.dumps(document),
            created_at=now,
            expires_at=request.expires_at,
            updated_at=now,
        )
    )
    found = await request_by_uri(conn, request.id)
    assert found is not None
    return found


async def end_request(
    conn: AsyncConnection, request: RequestRecord, target: RequestState, now: datetime
) -> bool:
    """Move an open request to declined, cancelled or expired; False if it had already ended."""
    if target not in (RequestState.DECLINED, RequestState.CANCELLED, RequestState.EXPIRED):
        raise ValueError("a request is only paid by a settlement")
    if target is not RequestState.EXPIRED and request.state(now) is not RequestState.OPEN:
        return False
    changed = await conn.execute(
        update(payment_requests)
        .where(
            payment_requests.c.id == request.id,
            payment_requests.c.state == RequestState.OPEN.value,
        )
        .values(state=target.value, updated_at=now)
    )
    return changed.rowcount == 1


async def request_by_uri(
    conn: AsyncConnection, uri: str, lock: bool = False
) -> RequestRecord | None:
    query = select(payment_requests).where(payment_requests.c.uri == uri)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return request_from_row(row) if row else None


async def request_by_id(conn: AsyncConnection, request_id: int) -> RequestRecord | None:
    row = (
        await conn.execute(select(payment_requests).where(payment_requests.c.id == request_id))
    ).first()
    return request_from_row(row) if row else None


def request_from_row(row: Any) -> RequestRecord:
    return RequestRecord(
        id=row.id,
        uri=row.uri,
        payee_uri=row.payee_uri,
        payer_uri=row.payer_uri,
        payee_account_id=row.payee_account_id,
        payer_account_id=row.payer_account_id,
        amount=row.amount,
        currency=row.currency,
        summary=row.summary,
        condition=row.condition,
        settlement_node=row.settlement_node,
        stored_state=RequestState(row.state),
        paid_by=row.paid_by,
        document=json.loads(row.document),
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at),
        is_ours=row.fulfillment is not None,
    )


async def mark_paid(
    conn: AsyncConnection, request_uri: str, transfer_uri: str, now: datetime
) -> bool:
    changed = await conn.execute(
        update(payment_requests)
        .where(
            payment_requests.c.uri == request_uri,
            payment_requests.c.state == RequestState.OPEN.value,
        )
        .values(state=RequestState.PAID.value, paid_by=transfer_uri, updated_at=now)
    )
    return changed.rowcount == 1
