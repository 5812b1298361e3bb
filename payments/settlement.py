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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments import ledger, peers
from payments.ledger import Failure, Kind, NewId, Transfer
from payments.money import AMOUNT_MAX
from payments.parties import (
    Message,
    NodeKey,
    Party,
    PaymentError,
    Policy,
    SettlementRejected,
    amount_in,
    check_amount,
    currency_of,
    peer_owner,
    sign_as_node,
    user_owner,
    utc,
    verify_proof,
)
from payments.peers import PEER_PREFIX
from payments.requests import (
    RequestRecord,
    RequestState,
    fulfills,
    mark_paid,
    request_by_uri,
)
from payments.tables import ledger_transfers, payment_requests, settlements
from protocol import payments as wire
from protocol.as2 import host_of
from protocol.proofs import sign_object

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
    HELD = "held"  # payee or local side: credited pending, until the payee takes it or time is up


TERMINAL = frozenset(SettlementState) - {SettlementState.PREPARED}


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
        amount=amount_in(policy, request.currency, request.amount),
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
    check_amount(amount.minor)
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
    outcome = await _move(
        conn, Kind.PENDING, offer, user_owner(payer.account_id), peer_owner(payee_node), now, new_id
    )
    if outcome.failure is Failure.INSUFFICIENT_FUNDS:
        raise PaymentError("your wallet does not hold enough for this payment")
    if not outcome.ok:
        raise PaymentError(f"the ledger refused the payment: {outcome.failure}")
    expires_at = wire.parse_time(offer.expires_at, "expiresAt")
    record = await _store(
        conn, new_id, now, offer, transfer, role="payer", state=SettlementState.PREPARED,
        peer=payee_node, payer_account_id=payer.account_id, payee_account_id=None,
        next_attempt_at=expires_at + timedelta(seconds=5),
    )  # fmt: skip
    return record, [_offer_message(node, record, attempt=0)]


_LEDGER_PREFIX = {Kind.PENDING: "reserve", Kind.SINGLE: "settle"}


async def _move(
    conn: AsyncConnection,
    kind: Kind,
    offer: wire.TransferOffer,
    debit_owner: str,
    credit_owner: str,
    now: datetime,
    new_id: NewId,
    prefix: str | None = None,
) -> ledger.Outcome:
    """The ledger side of a payment: a reservation (payer's node) or a credit (payee's)."""
    currency = offer.amount.currency
    accounts = [
        await ledger.open_account(
            conn, owner, currency, new_id, now, may_go_negative=owner.startswith(PEER_PREFIX)
        )
        for owner in (debit_owner, credit_owner)
    ]
    transfer = Transfer(
        id=_ledger_id(prefix or _LEDGER_PREFIX[kind], offer.id),
        kind=kind,
        debit_account_id=accounts[0].id,
        credit_account_id=accounts[1].id,
        amount=offer.amount.minor,
        currency=currency,
        memo=f"payment {offer.id}",
    )
    return await ledger.apply(conn, transfer, new_id, now)


_RECORD_DECISION = (
    update(settlements)
    .where(settlements.c.id == bindparam("settlement_id"))
    .execution_options(kith_direct=True)
)


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
    if decision.held_until is not None:
        return await _wait_for_payee(conn, record, decision.held_until, now)
    condition = record.transfer.get("condition")
    if decision.accepted and condition and not fulfills(decision.fulfillment or "", condition):
        raise SettlementRejected("the Accept's fulfillment does not unlock the condition")
    kind = Kind.POST if decision.accepted else Kind.VOID
    await _resolve_reservation(conn, record, kind, new_id, now)
    decided = replace(
        record,
        state=SettlementState.POSTED if decision.accepted else SettlementState.VOIDED,
        code=decision.code,
        reason=decision.reason or None,
        fulfillment=decision.fulfillment,
        decision=activity,
        decided_at=decision.decided_at or now,
    )
    await conn.execute(
        _RECORD_DECISION,
        {
            "settlement_id": record.id,
            "state": decided.state.value,
            "code": decided.code,
            "reason": decided.reason,
            "fulfillment": decided.fulfillment,
            "decision": json.dumps(activity),
            "decided_at": decided.decided_at,
            "next_attempt_at": None,
        },
    )
    if decision.accepted and record.request_uri is not None:
        await mark_paid(conn, record.request_uri, record.uri, now)
    return decided


# The longest a payee node may hold one of our users' payments for its payee to take.
HOLD_MAX = timedelta(days=8)


async def _wait_for_payee(
    conn: AsyncConnection, record: SettlementRecord, held_until: datetime, now: datetime
) -> SettlementRecord:
    """The payee's node holds the transfer for its payee until `held_until`: the money stays
    reserved and we ask again only after that."""
    if held_until > now + HOLD_MAX:
        raise SettlementRejected("the payee's node would hold the payment for too long")
    await conn.execute(
        update(settlements)
        .where(settlements.c.id == record.id)
        .values(next_attempt_at=held_until + timedelta(seconds=5))
    )
    return record


async def resolve_held(
    conn: AsyncConnection,
    node: NodeKey,
    record: SettlementRecord,
    take: bool,
    reason: str,
    now: datetime,
    new_id: NewId,
) -> tuple[SettlementRecord, list[Message]]:
    """The payee takes a held transfer (credited, accepted), or it goes back to the payer
    (declined, or not taken in time: rejected, nothing moved). Once: a held transfer that was
    resolved already is returned as it is."""
    await _serialize(conn, record.uri)
    current = await settlement_by_uri(conn, record.uri, lock=True)
    assert current is not None
    if current.state is not SettlementState.HELD:
        return current, []
    if take and now >= current.expires_at:
        raise PaymentError("the time to accept it has passed; it goes back to the sender")
    offer = wire.parse_transfer(current.transfer, current.peer or node.actor)
    payer_here = current.role == "local"
    debit_owner = user_owner(current.payer_account_id) if payer_here else peer_owner(current.peer)  # type: ignore[arg-type]
    assert current.payee_account_id is not None
    await _conclude(
        conn, current, Kind.POST if take else Kind.VOID, "take" if take else "return", "settle",
        debit_owner, user_owner(current.payee_account_id), new_id, now,
    )  # fmt: skip
    to = current.peer or node.actor
    decision_id = f"{node.base_url}/payments/decisions/{new_id(now)}"
    if take:
        decision = wire.build_accept(decision_id, node.actor, to, offer, None, now)
        state = SettlementState.POSTED if payer_here else SettlementState.ACCEPTED
        code = None
    else:
        decision = wire.build_reject(
            decision_id, node.actor, to, current.uri, Code.NOT_PAYABLE.value, reason
        )
        state, code = SettlementState.REJECTED, Code.NOT_PAYABLE.value
    signed = sign_as_node(node, decision, now)
    decided = replace(
        current,
        state=state,
        code=code,
        reason=None if take else reason,
        decision=signed,
        decided_at=now.replace(microsecond=0),
    )
    await conn.execute(
        _RECORD_DECISION,
        {
            "settlement_id": current.id,
            "state": state.value,
            "code": code,
            "reason": decided.reason,
            "fulfillment": None,
            "decision": json.dumps(signed),
            "decided_at": decided.decided_at,
            "next_attempt_at": None,
        },
    )
    return decided, [] if payer_here else [Message(to, signed)]


async def held_past(conn: AsyncConnection, now: datetime) -> list[SettlementRecord]:
    """Held transfers whose payee did not take them in time: to go back to their payers."""
    rows = await conn.execute(
        select(settlements)
        .where(
            settlements.c.state == SettlementState.HELD.value,
            settlements.c.next_attempt_at <= now,
        )
        .order_by(settlements.c.next_attempt_at)
        .limit(100)
    )
    return [settlement_from_row(row) for row in rows]


async def _resolve_reservation(
    conn: AsyncConnection, record: SettlementRecord, kind: Kind, new_id: NewId, now: datetime
) -> None:
    assert record.payer_account_id is not None
    assert record.peer is not None
    await _conclude(
        conn, record, kind, kind.value, "reserve", user_owner(record.payer_account_id),
        peer_owner(record.peer), new_id, now,
    )  # fmt: skip


async def _conclude(
    conn: AsyncConnection,
    record: SettlementRecord,
    kind: Kind,
    prefix: str,
    pending_prefix: str,
    debit_owner: str,
    credit_owner: str,
    new_id: NewId,
    now: datetime,
) -> None:
    """Post or void a payment's pending ledger transfer (a reservation, or a hold)."""
    debit = await ledger.account_of(conn, debit_owner, record.currency)
    credit = await ledger.account_of(conn, credit_owner, record.currency)
    assert debit is not None
    assert credit is not None
    outcome = await ledger.apply(
        conn,
        Transfer(
            id=_ledger_id(prefix, record.uri),
            kind=kind,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=record.amount,
            currency=record.currency,
            memo=f"payment {record.uri}",
            pending_id=_ledger_id(pending_prefix, record.uri),
        ),
        new_id,
        now,
    )
    if not outcome.ok:
        raise RuntimeError(f"the pending transfer of {record.uri} was not concluded: {outcome}")


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
    payee_refused: Callable[[str], Awaitable[str | None]] | None = None,
) -> list[Message]:
    """Decide a peer node's Offer once, durably; a repeat gets the stored decision.

    `payee_refused` says why a payee may not be paid at all (moderation: a suspended
    account), which is rejected as not payable (F99)."""
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
        return [Message(sender, sign_as_node(node, reject, now))]
    payee = Party(offer.payee, await payee_account(offer.payee))
    refused = await payee_refused(offer.payee) if payee_refused is not None else None
    record = await _decide(
        conn, node, offer, transfer, peer_owner(sender), Party(offer.payer), sender, policy,
        now, new_id, payee.account_id, refused,
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
    refused: str | None = None,
) -> SettlementRecord:
    """Check, then credit and accept or record the rejection: one decision, stored."""
    request, fulfillment = None, None
    if offer.request_id is not None:
        request = await request_by_uri(conn, offer.request_id, lock=True)
        payee_account_id = request.payee_account_id if request and request.is_ours else None
    else:
        payee_account_id = payee_here if isinstance(payee_here, int) else None
    problem = _problem(offer, request, payee_account_id, policy, now)
    if problem is None and refused is not None:
        problem = Code.NOT_PAYABLE.value, refused
    if problem is None and peer is not None:
        problem = await _over_credit_limit(conn, peer, offer, policy)
    # A direct transfer may wait for its payee to take it (a request was asked for already).
    held_until = (
        now + policy.acceptance_window if request is None and policy.acceptance_window else None
    )
    if problem is None:
        fulfillment = await _credit(
            conn, offer, request, debit_owner, payee_account_id, now, new_id,
            Kind.PENDING if held_until else Kind.SINGLE,
        )  # fmt: skip
        if isinstance(fulfillment, tuple):
            problem = fulfillment
    role = "payee" if peer is not None else "local"
    to = peer or node.actor
    decision_id = f"{node.base_url}/payments/decisions/{new_id(now)}"
    if problem is None and held_until is not None:
        decision = wire.build_tentative_accept(decision_id, node.actor, to, offer.id, held_until)
        state = SettlementState.HELD
    elif problem is None:
        assert not isinstance(fulfillment, tuple)
        decision = wire.build_accept(decision_id, node.actor, to, offer, fulfillment, now)
        state = SettlementState.ACCEPTED if peer else SettlementState.POSTED
    else:
        decision = wire.build_reject(decision_id, node.actor, to, offer.id, *problem)
        state = SettlementState.REJECTED
    signed = sign_as_node(node, decision, now)
    held = state is SettlementState.HELD
    return await _store(
        conn, new_id, now, offer, transfer, role=role, state=state, peer=peer,
        payer_account_id=payer.account_id, payee_account_id=payee_account_id, decision=signed,
        code=problem[0] if problem else None, reason=problem[1] if problem else None,
        fulfillment=fulfillment if problem is None else None,
        # As the decision says (statements compare it); a held one is decided later.
        decided_at=None if held else now.replace(microsecond=0),
        # A held transfer: decided by the end of the hold, returned then if not taken.
        expires_at=held_until if held else None, next_attempt_at=held_until if held else None,
    )  # fmt: skip


def _problem(
    offer: wire.TransferOffer,
    request: RequestRecord | None,
    payee_account_id: int | None,
    policy: Policy,
    now: datetime,
) -> tuple[str, str] | None:
    """Why the transfer cannot be accepted, checked on this node's clock; None if it can."""
    currency = currency_of(policy, offer.amount)
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
    """What the operator lets the payer's node do: one payment's size, its debt to us."""
    currency = offer.amount.currency
    limit, transfer_max = await peers.limits(
        conn, host_of(peer), currency, policy.default_credit_limit
    )
    if transfer_max is not None and offer.amount.minor > transfer_max:
        return Code.AMOUNT.value, "the amount is above this node's limit for that node's payments"
    account = await ledger.account_of(conn, peer_owner(peer), currency)
    # Held transfers count: they are owed the moment their payee takes them.
    owed = (
        (account.debits_posted + account.debits_pending - account.credits_posted) if account else 0
    )
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
    kind: Kind = Kind.SINGLE,
) -> str | tuple[str, str] | None:
    """Credit the payee (pending, for a held transfer) and mark the request paid; the
    fulfillment, or why it failed."""
    assert payee_account_id is not None
    if request is not None and not await mark_paid(conn, request.uri, offer.id, now):
        return Code.ALREADY_PAID.value, "the request was already paid"
    outcome = await _move(
        conn, kind, offer, debit_owner, user_owner(payee_account_id), now, new_id, "settle"
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


# --- storage --------------------------------------------------------------------------------


_BY_URI = (
    select(settlements)
    .where(settlements.c.uri == bindparam("uri"))
    .execution_options(kith_direct=True)  # see payments/ledger.py
)
_BY_URI_LOCKED = _BY_URI.with_for_update()
_INSERT = settlements.insert().execution_options(kith_direct=True)


async def settlement_by_uri(
    conn: AsyncConnection, uri: str, lock: bool = False
) -> SettlementRecord | None:
    locked = lock and conn.dialect.name == "postgresql"
    row = (await conn.execute(_BY_URI_LOCKED if locked else _BY_URI, {"uri": uri})).first()
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
    expires_at: datetime | None = None,
) -> SettlementRecord:
    """Store a settlement and return it as stored."""
    settlement_id = new_id(now)
    expires_at = expires_at or wire.parse_time(offer.expires_at, "expiresAt")
    # Parameters, not .values(): the statement is then compiled once, not per payment.
    await conn.execute(
        _INSERT,
        dict(
            id=settlement_id,
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
            expires_at=expires_at,
            decided_at=decided_at,
        ),
    )
    return SettlementRecord(
        id=settlement_id, uri=offer.id, role=role, state=state, peer=peer,
        request_uri=offer.request_id, payer_uri=offer.payer, payee_uri=offer.payee,
        payer_account_id=payer_account_id, payee_account_id=payee_account_id,
        currency=offer.amount.currency, amount=offer.amount.minor, code=code, reason=reason,
        fulfillment=fulfillment, transfer=transfer, decision=decision, created_at=now,
        expires_at=expires_at, decided_at=decided_at,
    )  # fmt: skip


# --- helpers --------------------------------------------------------------------------------


async def _serialize(conn: AsyncConnection, transfer_uri: str) -> None:
    """One transaction at a time per transfer id, until it commits: a client retrying on two
    processes at once, or a peer's duplicate delivery, waits and then finds the first one's
    transfer. (SQLite has one writer at a time already.)"""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(transfer_uri.encode()).digest()[:8], "big", signed=True)
        await conn.execute(select(func.pg_advisory_xact_lock(key)))


def _content_hash(transfer: dict[str, Any]) -> str:
    return wire.digest({key: value for key, value in transfer.items() if key != "proof"})


def _ledger_id(kind: str, uri: str) -> str:
    # Transfer URIs may be longer than ledger ids; their hash names them just as well.
    return f"{kind}:{hashlib.sha256(uri.encode()).hexdigest()}"


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
        await mark_paid(conn, record.request_uri, record.uri, now)
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
        held = settled is not None and settled.pending_state == "pending"
        credited = (
            settled is not None and settled.failure is None and settled.pending_state != "voided"
        )
        accepted = record.state in (SettlementState.ACCEPTED, SettlementState.POSTED)
        if held != (record.state is SettlementState.HELD):
            problems.append(f"transfer {record.uri} is {record.state.value} but its hold is not")
        elif credited != (accepted or held):
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
