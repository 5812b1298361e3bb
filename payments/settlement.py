"""Settlement: a payer's node reserves, the payee's node decides once, the payer's node follows.

The protocol of reference §6.4: the payer node, in one transaction, reserves the amount (a
pending ledger transfer from the payer's wallet to the payee node's peer account), stores the
signed Transfer and returns an `Offer{Transfer}` to send. The payee node, in one transaction,
checks everything and either credits the payee (from the payer node's peer account) and records
a signed `Accept` carrying the request's fulfillment, or records a signed `Reject` with a code.
That decision is final for the transfer id: a repeated Offer gets the same stored decision,
an Offer reusing the id for other content gets `F00`. The payer node posts the reservation on an
Accept whose fulfillment unlocks the condition, voids it on a Reject, and otherwise keeps it
and re-sends the Offer (a status query) until it hears: it never decides alone.

Both users on one node: the same decision in one transaction, the payer's wallet in place of
the peer account. Functions take the caller's connection and return the messages to send.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments import ledger, peers
from payments.ledger import Failure, Kind, NewId, Transfer
from payments.money import AMOUNT_MAX, Currencies
from payments.requests import (
    RequestState,
    condition_of,
    encode_fulfillment,
    fulfills,
    new_fulfillment,
    state_at,
)
from payments.tables import ledger_transfers, payment_requests, settlements
from protocol import payments as wire
from protocol.as2 import host_of, same_origin
from protocol.proofs import ProofError, proof_of, sign_object, verify_object

OFFER_LIFETIME = timedelta(minutes=2)
RESEND_AFTER_MAX = timedelta(hours=1)


class Code(StrEnum):
    """Why a payee node rejected a transfer (Interledger's codes where one fits)."""

    CONFLICT = "F00"  # the transfer id was used for something else
    INVALID = "F01"  # the transfer does not match the request it names
    UNKNOWN = "F02"  # no such request or payee here
    AMOUNT = "F03"  # wrong amount or currency
    CONDITION = "F05"  # wrong condition
    EXPIRED = "F06"  # the request or the offer expired (payee node's clock)
    ALREADY_PAID = "F07"
    NOT_PAYABLE = "F99"  # declined, cancelled, or the payee does not take transfers
    CREDIT_LIMIT = "T04"  # the payer node would owe more than we allow


class SettlementState(StrEnum):
    PREPARED = "prepared"  # payer side: reserved, waiting for the decision
    POSTED = "posted"  # payer or local side: paid
    VOIDED = "voided"  # payer side: rejected, reservation released
    ACCEPTED = "accepted"  # payee side
    REJECTED = "rejected"  # payee or local side


TERMINAL = frozenset(SettlementState) - {SettlementState.PREPARED}


class PaymentError(Exception):
    """A payment a local user asked for that cannot be made; the message says why."""


class SettlementRejected(Exception):
    """A peer's message this node refuses (logged with the reason; nothing was changed)."""


@dataclass(frozen=True)
class NodeKey:
    """This node's settlement identity: its instance actor and that actor's Ed25519 key."""

    actor: str
    key_id: str
    base_url: str
    seed: bytes = field(repr=False)


@dataclass(frozen=True)
class Signer:
    """A local user's Ed25519 key (it signs their payment requests)."""

    key_id: str
    seed: bytes = field(repr=False)


@dataclass(frozen=True)
class Party:
    uri: str
    account_id: int | None = None  # local accounts only


CurrencyLimit = Callable[[str], int]


@dataclass(frozen=True)
class Policy:
    currencies: Currencies
    default_credit_limit: peers.DefaultLimit = lambda _peer, _currency: 0
    offer_lifetime: timedelta = OFFER_LIFETIME
    accept_direct_transfers: bool = True
    # Per currency, in minor units; 0: no limit. One payment, in or out; a user's day, out.
    transfer_max: CurrencyLimit = lambda _currency: 0
    daily_max: CurrencyLimit = lambda _currency: 0


@dataclass(frozen=True)
class Message:
    """An activity for another node's actor (the caller signs and delivers it)."""

    to: str
    activity: dict[str, Any]


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


@dataclass(frozen=True)
class SettlementRecord:
    id: int
    uri: str
    role: str
    state: SettlementState
    peer: str | None
    request_uri: str | None
    payer_uri: str
    payee_uri: str
    payer_account_id: int | None
    payee_account_id: int | None
    currency: str
    amount: int
    code: str | None
    reason: str | None
    fulfillment: str | None
    transfer: dict[str, Any]
    decision: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


def user_owner(account_id: int) -> str:
    """The ledger owner of a local user's wallet."""
    return f"user:{account_id}"


def peer_owner(peer_actor: str) -> str:
    """The ledger owner of what a peer node and we owe each other (one per host)."""
    return peers.peer_owner(host_of(peer_actor))


# --- requests ----------------------------------------------------------------------------


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
    _check_amount(amount.minor)
    row_id = new_id(now)
    fulfillment = new_fulfillment()
    request = wire.PaymentRequest(
        id=f"{node.base_url}/payments/requests/{row_id}",
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
    currency = _currency(policy, request.amount)
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


# --- the payer's node ----------------------------------------------------------------------


async def pay_request(
    conn: AsyncConnection,
    node: NodeKey,
    request: RequestRecord,
    payer: Party,
    transfer_uri: str,
    policy: Policy,
    now: datetime,
    new_id: NewId,
) -> tuple[SettlementRecord, list[Message]]:
    """Pay a request as the local user `payer`: settled at once if the payee is local too,
    otherwise reserved and offered to the payee's node."""
    await _serialize(conn, transfer_uri)
    existing = await settlement_by_uri(conn, transfer_uri)
    if existing is not None:
        same = (existing.request_uri, existing.payer_uri) == (request.uri, payer.uri)
        return _repeated(existing, same)
    if request.payer_uri not in (None, payer.uri):
        raise PaymentError("this request is for someone else to pay")
    if request.payee_uri == payer.uri:
        raise PaymentError("you cannot pay your own request")
    state = request.state(now)
    if state is not RequestState.OPEN:
        raise PaymentError(f"the request is {state.value}")
    offer = wire.TransferOffer(
        id=transfer_uri,
        payer=payer.uri,
        payee=request.payee_uri,
        amount=_amount(policy, request.currency, request.amount),
        expires_at=wire.format_time(min(request.expires_at, now + policy.offer_lifetime)),
        request_id=request.uri,
        request_digest=wire.digest(request.document),
        condition=request.condition,
    )
    return await _pay(
        conn, node, offer, payer, request.settlement_node, request, policy, now, new_id
    )


async def send_transfer(
    conn: AsyncConnection,
    node: NodeKey,
    payer: Party,
    payee: Party,
    payee_node: str,
    amount: wire.Amount,
    transfer_uri: str,
    policy: Policy,
    now: datetime,
    new_id: NewId,
) -> tuple[SettlementRecord, list[Message]]:
    """Send money to an actor without a request (the payee node's decision is the receipt)."""
    await _serialize(conn, transfer_uri)
    existing = await settlement_by_uri(conn, transfer_uri)
    if existing is not None:
        same = (existing.payer_uri, existing.payee_uri, existing.currency, existing.amount) == (
            payer.uri, payee.uri, amount.currency, amount.minor,
        )  # fmt: skip
        return _repeated(existing, same and existing.request_uri is None)
    if payee.uri == payer.uri:
        raise PaymentError("you cannot send money to yourself")
    _check_amount(amount.minor)
    offer = wire.TransferOffer(
        id=transfer_uri,
        payer=payer.uri,
        payee=payee.uri,
        amount=amount,
        expires_at=wire.format_time(now + policy.offer_lifetime),
        request_id=None,
        request_digest=None,
        condition=None,
    )
    local_payee = payee.account_id if payee_node == node.actor else None
    return await _pay(conn, node, offer, payer, payee_node, local_payee, policy, now, new_id)


def _repeated(existing: SettlementRecord, same: bool) -> tuple[SettlementRecord, list[Message]]:
    """A payment asked for again with its idempotency key: the stored one, nothing to send."""
    if not same:
        raise PaymentError("this idempotency key was used for a different payment")
    return existing, []


async def _pay(
    conn: AsyncConnection,
    node: NodeKey,
    offer: wire.TransferOffer,
    payer: Party,
    payee_node: str,
    payee_here: RequestRecord | int | None,
    policy: Policy,
    now: datetime,
    new_id: NewId,
) -> tuple[SettlementRecord, list[Message]]:
    assert payer.account_id is not None
    transfer = sign_object(
        wire.build_transfer(offer), node.seed, node.key_id, wire.format_time(now)
    )
    existing = await settlement_by_uri(conn, offer.id)
    if existing is not None:
        if _content_hash(existing.transfer) != _content_hash(transfer):
            raise PaymentError("this idempotency key was used for a different payment")
        return existing, []
    if offer.request_id is not None and await _in_progress(conn, offer.request_id):
        raise PaymentError("a payment for this request is already under way")
    await _check_user_limits(conn, payer.account_id, offer.amount, policy, now)
    if payee_node == node.actor:
        record = await _decide(
            conn, node, offer, transfer, user_owner(payer.account_id), payer, None, policy, now,
            new_id, payee_here,
        )  # fmt: skip
        if record.state is SettlementState.REJECTED:
            raise PaymentError(record.reason or "the payment was refused")
        return record, []
    return await _reserve(conn, node, offer, transfer, payer, payee_node, now, new_id)


async def _check_user_limits(
    conn: AsyncConnection, account_id: int, amount: wire.Amount, policy: Policy, now: datetime
) -> None:
    """The node's limits on one payment and on what one user pays in a day."""
    most = policy.transfer_max(amount.currency)
    if most and amount.minor > most:
        raise PaymentError("the amount is above this server's limit for one payment")
    daily = policy.daily_max(amount.currency)
    if not daily:
        return
    spent = await conn.execute(
        select(func.coalesce(func.sum(settlements.c.amount), 0)).where(
            settlements.c.payer_account_id == account_id,
            settlements.c.role.in_(("payer", "local")),
            settlements.c.currency == amount.currency,
            settlements.c.state.in_((SettlementState.PREPARED.value, SettlementState.POSTED.value)),
            settlements.c.created_at > now - timedelta(days=1),
        )
    )
    if int(spent.scalar_one()) + amount.minor > daily:
        raise PaymentError("this would take you over this server's limit for one day")


async def _reserve(
    conn: AsyncConnection,
    node: NodeKey,
    offer: wire.TransferOffer,
    transfer: dict[str, Any],
    payer: Party,
    payee_node: str,
    now: datetime,
    new_id: NewId,
) -> tuple[SettlementRecord, list[Message]]:
    assert payer.account_id is not None
    currency = offer.amount.currency
    wallet = await ledger.open_account(conn, user_owner(payer.account_id), currency, new_id, now)
    peer = await ledger.open_account(
        conn, peer_owner(payee_node), currency, new_id, now, may_go_negative=True
    )
    outcome = await ledger.apply(
        conn,
        Transfer(
            id=_ledger_id("reserve", offer.id),
            kind=Kind.PENDING,
            debit_account_id=wallet.id,
            credit_account_id=peer.id,
            amount=offer.amount.minor,
            currency=currency,
            memo=f"payment {offer.id}",
        ),
        new_id,
        now,
    )
    if outcome.failure is Failure.INSUFFICIENT_FUNDS:
        raise PaymentError("your wallet does not hold enough for this payment")
    if not outcome.ok:
        raise PaymentError(f"the ledger refused the payment: {outcome.failure}")
    expires_at = wire.parse_time(offer.expires_at, "expiresAt")
    await _store(
        conn, new_id, now, offer, transfer, role="payer", state=SettlementState.PREPARED,
        peer=payee_node, payer_account_id=payer.account_id, payee_account_id=None,
        next_attempt_at=expires_at + timedelta(seconds=5),
    )  # fmt: skip
    record = await settlement_by_uri(conn, offer.id)
    assert record is not None
    return record, [_offer_message(node, record, attempt=0)]


async def decision_received(
    conn: AsyncConnection,
    activity: dict[str, Any],
    sender: str,
    sender_keys: Mapping[str, bytes],
    now: datetime,
    new_id: NewId,
) -> SettlementRecord | None:
    """Follow the payee node's decision: post the reservation on a valid Accept, void it on a
    Reject. Repeats change nothing; None if the decision is not about one of our transfers."""
    decision = wire.parse_decision(activity)
    record = await settlement_by_uri(conn, decision.transfer_id, lock=True)
    if record is None or record.role != "payer":
        return None
    if record.peer != sender:
        raise SettlementRejected("the decision does not come from the payee's node")
    verify_proof(activity, sender_keys, sender)
    if record.state is not SettlementState.PREPARED:
        return record  # decided already: a repeat
    condition = record.transfer.get("condition")
    if decision.accepted and condition and not fulfills(decision.fulfillment or "", condition):
        raise SettlementRejected("the Accept's fulfillment does not unlock the condition")
    kind = Kind.POST if decision.accepted else Kind.VOID
    await _resolve_reservation(conn, record, kind, new_id, now)
    state = SettlementState.POSTED if decision.accepted else SettlementState.VOIDED
    await conn.execute(
        update(settlements)
        .where(settlements.c.id == record.id)
        .values(
            state=state.value,
            code=decision.code,
            reason=decision.reason or None,
            fulfillment=decision.fulfillment,
            decision=json.dumps(activity),
            decided_at=decision.decided_at or now,
            next_attempt_at=None,
        )
    )
    if decision.accepted and record.request_uri is not None:
        await _mark_paid(conn, record.request_uri, record.uri, now)
    return await settlement_by_uri(conn, record.uri)


async def _resolve_reservation(
    conn: AsyncConnection, record: SettlementRecord, kind: Kind, new_id: NewId, now: datetime
) -> None:
    assert record.payer_account_id is not None
    assert record.peer is not None
    wallet = await ledger.account_of(conn, user_owner(record.payer_account_id), record.currency)
    peer = await ledger.account_of(conn, peer_owner(record.peer), record.currency)
    assert wallet is not None
    assert peer is not None
    outcome = await ledger.apply(
        conn,
        Transfer(
            id=_ledger_id(kind.value, record.uri),
            kind=kind,
            debit_account_id=wallet.id,
            credit_account_id=peer.id,
            amount=record.amount,
            currency=record.currency,
            memo=f"payment {record.uri}",
            pending_id=_ledger_id("reserve", record.uri),
        ),
        new_id,
        now,
    )
    if not outcome.ok:
        raise RuntimeError(f"the reservation of {record.uri} could not be resolved: {outcome}")


_RESEND_DUE = settlements.c.state == SettlementState.PREPARED.value


async def resend_is_due(conn: AsyncConnection, now: datetime) -> bool:
    """Whether any offer waits to be asked about again (a read, before taking a write lock)."""
    query = select(settlements.c.id).where(_RESEND_DUE, settlements.c.next_attempt_at <= now)
    return (await conn.execute(query.limit(1))).first() is not None


async def resend_due(
    conn: AsyncConnection, node: NodeKey, now: datetime, limit: int = 100
) -> list[Message]:
    """Offers still waiting for a decision whose time to ask again has come (status queries:
    the payee node answers with its stored decision, or rejects what it never saw)."""
    query = (
        select(settlements)
        .where(_RESEND_DUE, settlements.c.next_attempt_at <= now)
        .order_by(settlements.c.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":  # several processes: each offer to one of them
        query = query.with_for_update(skip_locked=True)
    rows = await conn.execute(query)
    messages = []
    for row in rows.fetchall():
        record = settlement_from_row(row)
        attempts = row.attempts + 1
        wait = min(timedelta(seconds=5 * 2**attempts), RESEND_AFTER_MAX)
        await conn.execute(
            update(settlements)
            .where(settlements.c.id == record.id)
            .values(attempts=attempts, next_attempt_at=now + wait)
        )
        messages.append(_offer_message(node, record, attempts))
    return messages


async def ask_again_now(conn: AsyncConnection, now: datetime) -> int:
    """Make every unanswered offer due (on start-up: answers may have been lost while this
    node was down, and the payee node replays its decision to a repeated offer)."""
    changed = await conn.execute(update(settlements).where(_RESEND_DUE).values(next_attempt_at=now))
    return changed.rowcount


async def in_doubt(conn: AsyncConnection, before: datetime) -> list[SettlementRecord]:
    """Offers reserved before `before` that still have no decision: flagged, never released."""
    rows = await conn.execute(
        select(settlements)
        .where(
            settlements.c.state == SettlementState.PREPARED.value,
            settlements.c.created_at < before,
        )
        .order_by(settlements.c.created_at)
    )
    return [settlement_from_row(row) for row in rows]


def _offer_message(node: NodeKey, record: SettlementRecord, attempt: int) -> Message:
    assert record.peer is not None
    activity_id = f"{record.uri}/offers/{attempt}"
    return Message(
        record.peer, wire.build_offer(activity_id, node.actor, record.peer, record.transfer)
    )


# --- the payee's node ----------------------------------------------------------------------


async def offer_received(
    conn: AsyncConnection,
    node: NodeKey,
    activity: dict[str, Any],
    sender: str,
    sender_keys: Mapping[str, bytes],
    payee_account: Callable[[str], Awaitable[int | None]],
    policy: Policy,
    now: datetime,
    new_id: NewId,
) -> list[Message]:
    """Decide a peer node's Offer once, durably; a repeat gets the stored decision."""
    if activity.get("actor") != sender:
        raise SettlementRejected("the Offer's actor is not the node that sent it")
    transfer = activity.get("object")
    offer = wire.parse_transfer(transfer, sender)
    assert isinstance(transfer, dict)
    verify_proof(transfer, sender_keys, sender)
    await _serialize(conn, offer.id)
    known = await settlement_by_uri(conn, offer.id)
    if known is not None:
        if _content_hash(known.transfer) == _content_hash(transfer) and known.decision:
            return [Message(sender, known.decision)]
        reject = wire.build_reject(
            f"{node.base_url}/payments/decisions/{new_id(now)}", node.actor, sender, offer.id,
            Code.CONFLICT.value, "this transfer id was already used for another transfer",
        )  # fmt: skip
        return [Message(sender, _sign(node, reject, now))]
    payee = Party(offer.payee, await payee_account(offer.payee))
    record = await _decide(
        conn, node, offer, transfer, peer_owner(sender), Party(offer.payer), sender, policy,
        now, new_id, payee.account_id,
    )  # fmt: skip
    assert record.decision is not None
    return [Message(sender, record.decision)]


async def _decide(
    conn: AsyncConnection,
    node: NodeKey,
    offer: wire.TransferOffer,
    transfer: dict[str, Any],
    debit_owner: str,
    payer: Party,
    peer: str | None,
    policy: Policy,
    now: datetime,
    new_id: NewId,
    payee_here: RequestRecord | int | None,
) -> SettlementRecord:
    """Check, then credit and accept or record the rejection: one decision, stored."""
    request, fulfillment = None, None
    if offer.request_id is not None:
        request = await request_by_uri(conn, offer.request_id, lock=True)
        payee_account_id = request.payee_account_id if request and request.is_ours else None
    else:
        payee_account_id = payee_here if isinstance(payee_here, int) else None
    problem = _problem(offer, request, payee_account_id, policy, now)
    if problem is None and peer is not None:
        problem = await _over_credit_limit(conn, peer, offer, policy)
    if problem is None:
        fulfillment = await _credit(
            conn, offer, request, debit_owner, payee_account_id, now, new_id
        )
        if isinstance(fulfillment, tuple):
            problem = fulfillment
    role = "payee" if peer is not None else "local"
    to = peer or node.actor
    decision_id = f"{node.base_url}/payments/decisions/{new_id(now)}"
    if problem is None:
        assert not isinstance(fulfillment, tuple)
        decision = wire.build_accept(decision_id, node.actor, to, offer, fulfillment, now)
        state = SettlementState.ACCEPTED if peer else SettlementState.POSTED
    else:
        decision = wire.build_reject(decision_id, node.actor, to, offer.id, *problem)
        state = SettlementState.REJECTED
    signed = _sign(node, decision, now)
    await _store(
        conn, new_id, now, offer, transfer, role=role, state=state, peer=peer,
        payer_account_id=payer.account_id, payee_account_id=payee_account_id, decision=signed,
        code=problem[0] if problem else None, reason=problem[1] if problem else None,
        fulfillment=fulfillment if problem is None else None,
        decided_at=now.replace(microsecond=0),  # as the decision says (statements compare it)
    )  # fmt: skip
    record = await settlement_by_uri(conn, offer.id)
    assert record is not None
    return record


def _problem(
    offer: wire.TransferOffer,
    request: RequestRecord | None,
    payee_account_id: int | None,
    policy: Policy,
    now: datetime,
) -> tuple[str, str] | None:
    """Why the transfer cannot be accepted, checked on this node's clock; None if it can."""
    currency = _currency(policy, offer.amount)
    if currency is None or offer.amount.minor > AMOUNT_MAX:
        return Code.AMOUNT.value, "the amount or its currency is not one this node takes"
    most = policy.transfer_max(offer.amount.currency)
    if most and offer.amount.minor > most:
        return Code.AMOUNT.value, "the amount is above this node's limit for one payment"
    if wire.parse_time(offer.expires_at, "expiresAt") <= now:
        return Code.EXPIRED.value, "the offer expired before it was decided"
    if offer.request_id is None:
        if payee_account_id is None:
            return Code.UNKNOWN.value, "the payee has no wallet on this node"
        if not policy.accept_direct_transfers:
            return Code.NOT_PAYABLE.value, "this node does not take transfers without a request"
        return None
    if request is None or not request.is_ours or payee_account_id is None:
        return Code.UNKNOWN.value, "no such payment request on this node"
    if offer.request_digest != wire.digest(request.document) or offer.payee != request.payee_uri:
        return Code.INVALID.value, "the transfer does not name the request as it was signed"
    if offer.condition != request.condition:
        return Code.CONDITION.value, "the transfer's condition is not the request's"
    if request.payer_uri not in (None, offer.payer):
        return Code.INVALID.value, "the request is for another payer"
    if (offer.amount.currency, offer.amount.minor) != (request.currency, request.amount):
        return Code.AMOUNT.value, "the amount is not the amount requested"
    state = request.state(now)
    if state is RequestState.PAID:
        return Code.ALREADY_PAID.value, "the request was already paid"
    if state is RequestState.EXPIRED:
        return Code.EXPIRED.value, "the request expired"
    if state is not RequestState.OPEN:
        return Code.NOT_PAYABLE.value, f"the request was {state.value}"
    return None


async def _over_credit_limit(
    conn: AsyncConnection, peer: str, offer: wire.TransferOffer, policy: Policy
) -> tuple[str, str] | None:
    currency = offer.amount.currency
    account = await ledger.account_of(conn, peer_owner(peer), currency)
    owed = (account.debits_posted - account.credits_posted) if account else 0
    limit = await peers.credit_limit(conn, host_of(peer), currency, policy.default_credit_limit)
    if owed + offer.amount.minor > limit:
        return Code.CREDIT_LIMIT.value, "the payer's node would owe more than this node allows"
    return None


async def _credit(
    conn: AsyncConnection,
    offer: wire.TransferOffer,
    request: RequestRecord | None,
    debit_owner: str,
    payee_account_id: int | None,
    now: datetime,
    new_id: NewId,
) -> str | tuple[str, str] | None:
    """Credit the payee and mark the request paid; the fulfillment, or why it failed."""
    assert payee_account_id is not None
    if request is not None and not await _mark_paid(conn, request.uri, offer.id, now):
        return Code.ALREADY_PAID.value, "the request was already paid"
    currency = offer.amount.currency
    debit = await ledger.open_account(
        conn, debit_owner, currency, new_id, now, may_go_negative=debit_owner.startswith("peer:")
    )
    credit = await ledger.open_account(conn, user_owner(payee_account_id), currency, new_id, now)
    outcome = await ledger.apply(
        conn,
        Transfer(
            id=_ledger_id("settle", offer.id),
            kind=Kind.SINGLE,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=offer.amount.minor,
            currency=currency,
            memo=f"payment {offer.id}",
        ),
        new_id,
        now,
    )
    if outcome.failure is Failure.INSUFFICIENT_FUNDS:
        raise PaymentError("your wallet does not hold enough for this payment")
    if not outcome.ok:
        raise RuntimeError(f"the ledger refused settlement {offer.id}: {outcome.failure}")
    if request is None:
        return None
    row = await conn.execute(
        select(payment_requests.c.fulfillment).where(payment_requests.c.uri == request.uri)
    )
    return row.scalar_one()


async def _mark_paid(
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


# --- storage --------------------------------------------------------------------------------


async def settlement_by_uri(
    conn: AsyncConnection, uri: str, lock: bool = False
) -> SettlementRecord | None:
    query = select(settlements).where(settlements.c.uri == uri)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return settlement_from_row(row) if row else None


async def settlement_by_id(conn: AsyncConnection, settlement_id: int) -> SettlementRecord | None:
    row = (await conn.execute(select(settlements).where(settlements.c.id == settlement_id))).first()
    return settlement_from_row(row) if row else None


async def _in_progress(conn: AsyncConnection, request_uri: str) -> bool:
    row = await conn.execute(
        select(settlements.c.id)
        .where(
            settlements.c.request_uri == request_uri,
            settlements.c.state.in_([SettlementState.PREPARED.value, SettlementState.POSTED.value]),
        )
        .limit(1)
    )
    return row.first() is not None


async def _store(
    conn: AsyncConnection,
    new_id: NewId,
    now: datetime,
    offer: wire.TransferOffer,
    transfer: dict[str, Any],
    role: str,
    state: SettlementState,
    peer: str | None,
    payer_account_id: int | None,
    payee_account_id: int | None,
    decision: dict[str, Any] | None = None,
    code: str | None = None,
    reason: str | None = None,
    fulfillment: str | None = None,
    decided_at: datetime | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    await conn.execute(
        settlements.insert().values(
            id=new_id(now),
            uri=offer.id,
            role=role,
            state=state.value,
            peer=peer,
            request_uri=offer.request_id,
            payer_uri=offer.payer,
            payee_uri=offer.payee,
            payer_account_id=payer_account_id,
            payee_account_id=payee_account_id,
            currency=offer.amount.currency,
            amount=offer.amount.minor,
            content_hash=_content_hash(transfer),
            code=code,
            reason=reason,
            fulfillment=fulfillment,
            transfer=json.dumps(transfer),
            decision=json.dumps(decision) if decision is not None else None,
            attempts=0,
            next_attempt_at=next_attempt_at,
            created_at=now,
            expires_at=wire.parse_time(offer.expires_at, "expiresAt"),
            decided_at=decided_at,
        )
    )


# --- helpers --------------------------------------------------------------------------------


async def _serialize(conn: AsyncConnection, transfer_uri: str) -> None:
    """One transaction at a time per transfer id, until it commits: a client retrying on two
    processes at once, or a peer's duplicate delivery, waits and then finds the first one's
    transfer. (SQLite has one writer at a time already.)"""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(transfer_uri.encode()).digest()[:8], "big", signed=True)
        await conn.execute(select(func.pg_advisory_xact_lock(key)))


def verify_proof(document: dict[str, Any], keys: Mapping[str, bytes], owner: str) -> None:
    """The document's proof verifies with one of `owner`'s keys (same origin as `owner`)."""
    try:
        method = proof_of(document)["verificationMethod"]
        key = keys.get(method)
        if key is None or not same_origin(method, owner):
            raise SettlementRejected(f"the proof's key {method} is not one of {owner}'s keys")
        verify_object(document, key)
    except ProofError as exc:
        raise SettlementRejected(f"the proof is not valid: {exc}") from None


def _sign(node: NodeKey, document: dict[str, Any], now: datetime) -> dict[str, Any]:
    return sign_object(document, node.seed, node.key_id, wire.format_time(now))


def _content_hash(transfer: dict[str, Any]) -> str:
    return wire.digest({key: value for key, value in transfer.items() if key != "proof"})


def _ledger_id(kind: str, uri: str) -> str:
    # Transfer URIs may be longer than ledger ids; their hash names them just as well.
    return f"{kind}:{hashlib.sha256(uri.encode()).hexdigest()}"


def _currency(policy: Policy, amount: wire.Amount) -> object | None:
    try:
        currency = policy.currencies.get(amount.currency)
    except ValueError:
        return None
    return currency if currency.scale == amount.scale else None


def _amount(policy: Policy, code: str, minor: int) -> wire.Amount:
    return wire.Amount(code, minor, policy.currencies.get(code).scale)


def _check_amount(minor: int) -> None:
    if not 0 < minor <= AMOUNT_MAX:
        raise PaymentError("the amount must be above zero and within the node's bounds")


def utc(moment: datetime) -> datetime:
    """A stored timestamp as aware UTC (SQLite hands them back naive; they were UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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


def settlement_from_row(row: Any) -> SettlementRecord:
    return SettlementRecord(
        id=row.id,
        uri=row.uri,
        role=row.role,
        state=SettlementState(row.state),
        peer=row.peer,
        request_uri=row.request_uri,
        payer_uri=row.payer_uri,
        payee_uri=row.payee_uri,
        payer_account_id=row.payer_account_id,
        payee_account_id=row.payee_account_id,
        currency=row.currency,
        amount=row.amount,
        code=row.code,
        reason=row.reason,
        fulfillment=row.fulfillment,
        transfer=json.loads(row.transfer),
        decision=json.loads(row.decision) if row.decision else None,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at),
        decided_at=utc(row.decided_at) if row.decided_at else None,
    )


# --- operators ------------------------------------------------------------------------------

OPERATOR_CODE = "R00"  # resolved by this node's operator, not by the payee node


async def resolve_by_operator(
    conn: AsyncConnection, uri: str, post: bool, reason: str, now: datetime, new_id: NewId
) -> SettlementRecord:
    """Post or void an unanswered payment on the operator's word (an audited action: the
    reason is kept on the transfer). Only for payments still waiting for their decision."""
    record = await settlement_by_uri(conn, uri, lock=True)
    if record is None or record.role != "payer":
        raise PaymentError(f"{uri} is not a payment from this node")
    if record.state is not SettlementState.PREPARED:
        raise PaymentError(f"{uri} is already {record.state.value}")
    if not reason.strip():
        raise PaymentError("say why (the reason is kept with the payment)")
    await _resolve_reservation(conn, record, Kind.POST if post else Kind.VOID, new_id, now)
    state = SettlementState.POSTED if post else SettlementState.VOIDED
    await conn.execute(
        update(settlements)
        .where(settlements.c.id == record.id)
        .values(
            state=state.value,
            code=OPERATOR_CODE,
            reason=f"resolved by the operator: {reason.strip()}",
            decided_at=now,
            next_attempt_at=None,
        )
    )
    if post and record.request_uri is not None:
        await _mark_paid(conn, record.request_uri, record.uri, now)
    found = await settlement_by_uri(conn, uri)
    assert found is not None
    return found


_LEDGER_STATE = {  # payer side: the reservation's state for each settlement state
    SettlementState.PREPARED: "pending",
    SettlementState.POSTED: "posted",
    SettlementState.VOIDED: "voided",
}


async def audit(conn: AsyncConnection) -> list[str]:
    """Disagreements between settlements, requests and the ledger; empty if none."""
    transfers = {
        row.id: row
        for row in await conn.execute(
            select(
                ledger_transfers.c.id, ledger_transfers.c.pending_state, ledger_transfers.c.failure
            ).where(
                ledger_transfers.c.id.like("reserve:%") | ledger_transfers.c.id.like("settle:%")
            )
        )
    }
    problems: list[str] = []
    paid_by: dict[str, list[str]] = {}
    for row in await conn.execute(select(settlements)):
        record = settlement_from_row(row)
        if record.role == "payer":
            reserve = transfers.get(_ledger_id("reserve", record.uri))
            if reserve is None or reserve.pending_state != _LEDGER_STATE[record.state]:
                problems.append(
                    f"payment {record.uri} is {record.state.value} but its reservation is not"
                )
            continue
        settled = transfers.get(_ledger_id("settle", record.uri))
        credited = settled is not None and settled.failure is None
        accepted = record.state in (SettlementState.ACCEPTED, SettlementState.POSTED)
        if credited != accepted:
            problems.append(
                f"transfer {record.uri} is {record.state.value} but the ledger disagrees"
            )
        if accepted and record.request_uri is not None:
            paid_by.setdefault(record.request_uri, []).append(record.uri)
            condition = record.transfer.get("condition") or ""
            if not fulfills(record.fulfillment or "", condition):
                problems.append(f"transfer {record.uri} was accepted without the fulfillment")
    for row in await conn.execute(
        select(payment_requests).where(payment_requests.c.fulfillment.is_not(None))
    ):
        payments = paid_by.get(row.uri, [])
        if len(payments) > 1:
            problems.append(f"request {row.uri} was paid {len(payments)} times")
        if (row.state == RequestState.PAID.value) != bool(payments) or row.paid_by not in (
            payments or [None]
        ):
            problems.append(f"request {row.uri} is {row.state} but its payments say otherwise")
    return problems
