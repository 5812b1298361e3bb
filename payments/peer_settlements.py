"""Settlement between operators (reference §6.6): real money one node's operator pays another's,
out of band, booked against the peer account.

The debtor's operator pays (a bank transfer, cash) and records it: the debtor node books it at
once (debit the peer's account: it owes the peer that much less; credit `external`: the money
left the system) and sends the peer a signed `Create{Settlement}` with the amount and the
operator's reference. The creditor node stores it unconfirmed and books nothing, since only its
operator can tell that the money arrived. When they confirm, it books the mirror entry (debit
`external`, credit the debtor's peer account) and answers a signed Accept, and the debtor node
marks its record confirmed (RFC 0038's symmetry). A settlement is never reversed: a mistake is
corrected by a new settlement, the other way round.

Functions take the caller's connection and return the messages to send.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments import ledger
from payments.ledger import Kind, NewId, Transfer
from payments.money import AMOUNT_MAX, Currency, format_amount
from payments.parties import (
    EXTERNAL_OWNER,
    Message,
    NodeKey,
    PaymentError,
    Policy,
    SettlementRejected,
    check_amount,
    currency_of,
    peer_owner,
    sign_as_node,
    utc,
    verify_proof,
)
from payments.tables import ledger_accounts, ledger_transfers, peer_settlements
from protocol import payments as wire
from protocol.as2 import host_of

DEBTOR, CREDITOR = "debtor", "creditor"
SENT, UNCONFIRMED, CONFIRMED = "sent", "unconfirmed", "confirmed"
_LEDGER_PREFIX = "peer-settlement"


@dataclass(frozen=True)
class PeerSettlementRecord:
    id: int
    uri: str
    peer: str  # host[:port]
    role: str  # debtor (we paid) or creditor (they paid)
    currency: str
    amount: int
    reference: str
    state: str  # sent, unconfirmed, confirmed
    document: dict[str, Any]  # the signed Settlement
    answer: dict[str, Any] | None  # the creditor's signed Accept
    created_at: datetime
    confirmed_at: datetime | None

    @property
    def peer_actor(self) -> str:
        """The other node's actor: the creditor for our settlements, the debtor for theirs."""
        return self.document["to"][0] if self.role == DEBTOR else self.document["attributedTo"]


def node_actor_of(uri: str) -> str:
    """The instance actor of the node serving `uri` (a Kith node's is at /actor)."""
    scheme = uri.split("://", 1)[0]
    return f"{scheme}://{host_of(uri)}/actor"


# --- the debtor's node ----------------------------------------------------------------------


async def record_payment_to_peer(
    conn: AsyncConnection,
    node: NodeKey,
    peer_actor: str,
    amount: wire.Amount,
    reference: str,
    now: datetime,
    new_id: NewId,
) -> tuple[PeerSettlementRecord, Message]:
    """Our operator paid the peer's `amount` out of band: book it against the peer account and
    return the signed Create{Settlement} to send. The same reference again is the same
    settlement (nothing is booked twice)."""
    reference = _checked_reference(reference)
    check_amount(amount.minor)
    host = host_of(peer_actor)
    owed = await _owed_to(conn, peer_actor, amount.currency, new_id, now)  # locks: one at a time
    existing = await settlement_by_reference(conn, host, DEBTOR, reference)
    if existing is not None:
        if (existing.currency, existing.amount) != (amount.currency, amount.minor):
            raise PaymentError(
                f"reference {reference!r} already names another settlement with {host}"
            )
        return existing, _create(node, existing)
    if owed < amount.minor:
        currency = Currency(amount.currency, amount.scale)
        owed_shown, shown = (format_amount(m, currency) for m in (max(owed, 0), amount.minor))
        raise PaymentError(
            f"you owe {host} {owed_shown} {currency.code}, less than {shown} {currency.code}"
        )
    settlement = wire.PeerSettlement(
        id=f"{node.base_url}/payments/settlements/{secrets.token_urlsafe(16)}",
        debtor=node.actor,
        creditor=peer_actor,
        amount=amount,
        reference=reference,
        published=now,
    )
    signed = sign_as_node(node, wire.build_settlement(settlement), now)
    await _book(conn, settlement.id, peer_owner(peer_actor), EXTERNAL_OWNER, amount, new_id, now)
    await _store(conn, new_id(now), signed, host, DEBTOR, SENT, now)
    record = await settlement_by_uri(conn, settlement.id)
    assert record is not None
    return record, _create(node, record)


async def confirmation_received(
    conn: AsyncConnection,
    activity: dict[str, Any],
    sender: str,
    sender_keys: dict[str, bytes],
    now: datetime,
) -> PeerSettlementRecord | None:
    """The creditor's Accept of our settlement: mark it confirmed. None if it is not ours."""
    uri, confirmed_at = wire.parse_settlement_confirmation(activity)
    record = await settlement_by_uri(conn, uri, lock=True)
    if record is None or record.role != DEBTOR:
        return None
    if sender != record.peer_actor or activity.get("actor") != sender:
        raise SettlementRejected("only the node that was paid confirms a settlement")
    verify_proof(activity, sender_keys, sender)
    if record.state == CONFIRMED:
        return record  # a repeat
    await _confirmed(conn, record.id, activity, confirmed_at)
    return await settlement_by_uri(conn, uri)


# --- the creditor's node --------------------------------------------------------------------


async def settlement_received(
    conn: AsyncConnection,
    node: NodeKey,
    activity: dict[str, Any],
    sender: str,
    sender_keys: dict[str, bytes],
    policy: Policy,
    now: datetime,
    new_id: NewId,
) -> tuple[PeerSettlementRecord, list[Message]]:
    """A peer node says its operator paid ours: keep it, unconfirmed, booking nothing until
    our operator confirms. A repeat changes nothing (once confirmed, it gets the confirmation
    again: the peer may have lost it)."""
    if activity.get("actor") != sender or sender != node_actor_of(sender):
        raise SettlementRejected("a settlement must come from the paying node's instance actor")
    document = activity.get("object")
    settlement = wire.parse_settlement(document, sender)
    assert isinstance(document, dict)
    if settlement.creditor != node.actor:
        raise SettlementRejected("the settlement is not addressed to this node")
    verify_proof(document, sender_keys, sender)
    if currency_of(policy, settlement.amount) is None:
        raise SettlementRejected(
            f"this node does not take {settlement.amount.currency} at that scale"
        )
    if settlement.amount.minor > AMOUNT_MAX:
        raise SettlementRejected("the amount is beyond this node's bounds")
    host = host_of(sender)
    existing = await settlement_by_uri(conn, settlement.id)
    if existing is not None:
        if existing.role != CREDITOR or _content(existing.document) != _content(document):
            raise SettlementRejected(f"settlement {settlement.id} exists with other content")
        answer = [Message(sender, existing.answer)] if existing.answer else []
        return existing, answer
    if await settlement_by_reference(conn, host, CREDITOR, settlement.reference) is not None:
        raise SettlementRejected(
            f"{host} already sent a settlement with reference {settlement.reference!r}"
        )
    await _store(conn, new_id(now), document, host, CREDITOR, UNCONFIRMED, now)
    record = await settlement_by_uri(conn, settlement.id)
    assert record is not None
    return record, []


async def confirm_settlement(
    conn: AsyncConnection, node: NodeKey, uri: str, now: datetime, new_id: NewId
) -> tuple[PeerSettlementRecord, Message]:
    """Our operator says the peer's money arrived: book it and return the signed Accept."""
    record = await settlement_by_uri(conn, uri, lock=True)
    if record is None:
        raise PaymentError(f"no settlement {uri} here")
    if record.role != CREDITOR:
        raise PaymentError(f"this node sent {uri}: {record.peer} confirms it")
    if record.state == CONFIRMED:
        raise PaymentError(f"{uri} is already confirmed")
    amount = wire.parse_amount_json(record.document["amount"])
    await _book(conn, uri, EXTERNAL_OWNER, peer_owner(record.peer_actor), amount, new_id, now)
    accept = wire.build_settlement_confirmation(
        f"{node.base_url}/payments/settlements/{record.id}/confirmation",
        node.actor,
        record.peer_actor,
        uri,
        now,
    )
    signed = sign_as_node(node, accept, now)
    # As the Accept says it (statements compare the moment on both nodes).
    await _confirmed(conn, record.id, signed, now.replace(microsecond=0))
    confirmed = await settlement_by_uri(conn, uri)
    assert confirmed is not None
    return confirmed, Message(record.peer_actor, signed)


# --- records --------------------------------------------------------------------------------


async def settlement_by_uri(
    conn: AsyncConnection, uri: str, lock: bool = False
) -> PeerSettlementRecord | None:
    query = select(peer_settlements).where(peer_settlements.c.uri == uri)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    return _record(row) if row else None


async def settlement_by_reference(
    conn: AsyncConnection, host: str, role: str, reference: str
) -> PeerSettlementRecord | None:
    """The settlement with the peer at `host` that carries the debtor operator's `reference`."""
    row = (
        await conn.execute(
            select(peer_settlements).where(
                peer_settlements.c.peer == host,
                peer_settlements.c.role == role,
                peer_settlements.c.reference == reference,
            )
        )
    ).first()
    return _record(row) if row else None


async def settlements_with(conn: AsyncConnection, peer_host: str) -> list[PeerSettlementRecord]:
    """Every settlement with a peer, either way, newest first (for operators)."""
    rows = await conn.execute(
        select(peer_settlements)
        .where(peer_settlements.c.peer == peer_host)
        .order_by(peer_settlements.c.id.desc())
    )
    return [_record(row) for row in rows]


async def audit(conn: AsyncConnection) -> list[str]:
    """Settlements whose ledger entry is missing, or present before confirmation; empty if none."""
    booked = {
        row.id
        for row in await conn.execute(
            select(ledger_transfers.c.id).where(
                ledger_transfers.c.id.like(f"{_LEDGER_PREFIX}:%"),
                ledger_transfers.c.failure.is_(None),
            )
        )
    }
    problems = []
    for row in await conn.execute(select(peer_settlements)):
        should_be_booked = row.state != UNCONFIRMED
        if (_ledger_id(row.uri) in booked) != should_be_booked:
            problems.append(f"settlement {row.uri} is {row.state} but the ledger disagrees")
    return problems


def _create(node: NodeKey, record: PeerSettlementRecord) -> Message:
    create = {
        "@context": wire.PAYMENT_CONTEXT,
        "type": "Create",
        "id": f"{record.uri}/activity",
        "actor": node.actor,
        "to": [record.peer_actor],
        "object": record.document,
    }
    return Message(record.peer_actor, create)


def _checked_reference(reference: str) -> str:
    reference = reference.strip()
    if not 0 < len(reference) <= wire.REFERENCE_LENGTH_MAX:
        raise PaymentError(
            f"give your reference for the payment (1 to {wire.REFERENCE_LENGTH_MAX} characters)"
        )
    return reference


async def _owed_to(
    conn: AsyncConnection, peer_actor: str, currency: str, new_id: NewId, now: datetime
) -> int:
    """What we owe the peer in `currency` (posted), its account locked until we commit so that
    two settlements recorded at once cannot both pay the same debt."""
    account = await ledger.open_account(
        conn, peer_owner(peer_actor), currency, new_id, now, may_go_negative=True
    )
    await conn.execute(
        select(ledger_accounts.c.id).where(ledger_accounts.c.id == account.id).with_for_update()
    )
    locked = await ledger.account_of(conn, account.owner, currency)
    assert locked is not None
    return locked.balance


async def _book(
    conn: AsyncConnection,
    uri: str,
    debit_owner: str,
    credit_owner: str,
    amount: wire.Amount,
    new_id: NewId,
    now: datetime,
) -> None:
    """The settlement's one ledger entry on this node (named after it: booked once)."""
    debit, credit = [
        await ledger.open_account(conn, owner, amount.currency, new_id, now, may_go_negative=True)
        for owner in (debit_owner, credit_owner)
    ]
    transfer = Transfer(
        id=_ledger_id(uri),
        kind=Kind.SINGLE,
        debit_account_id=debit.id,
        credit_account_id=credit.id,
        amount=amount.minor,
        currency=amount.currency,
        memo=f"settlement {uri}",
    )
    outcome = await ledger.apply(conn, transfer, new_id, now)
    if not outcome.ok:  # both accounts may go negative: only a damaged ledger gets here
        raise PaymentError(f"the ledger refused settlement {uri}: {outcome.failure}")


def _ledger_id(uri: str) -> str:
    # Settlement URIs may be longer than ledger ids; their hash names them just as well.
    return f"{_LEDGER_PREFIX}:{hashlib.sha256(uri.encode()).hexdigest()}"


def _content(document: dict[str, Any]) -> str:
    """What a settlement says, whoever signed it when (the proof left out)."""
    return wire.digest({key: value for key, value in document.items() if key != "proof"})


async def _store(
    conn: AsyncConnection,
    row_id: int,
    document: dict[str, Any],
    host: str,
    role: str,
    state: str,
    now: datetime,
) -> None:
    amount = wire.parse_amount_json(document["amount"])
    await conn.execute(
        peer_settlements.insert().values(
            id=row_id,
            uri=document["id"],
            peer=host,
            role=role,
            currency=amount.currency,
            amount=amount.minor,
            reference=document["reference"],
            state=state,
            document=json.dumps(document),
            answer=None,
            created_at=now,
            confirmed_at=None,
        )
    )


async def _confirmed(
    conn: AsyncConnection, row_id: int, answer: dict[str, Any], confirmed_at: datetime
) -> None:
    await conn.execute(
        update(peer_settlements)
        .where(peer_settlements.c.id == row_id)
        .values(state=CONFIRMED, answer=json.dumps(answer), confirmed_at=confirmed_at)
    )


def _record(row: Any) -> PeerSettlementRecord:
    return PeerSettlementRecord(
        id=row.id,
        uri=row.uri,
        peer=row.peer,
        role=row.role,
        currency=row.currency,
        amount=row.amount,
        reference=row.reference,
        state=row.state,
        document=json.loads(row.document),
        answer=json.loads(row.answer) if row.answer else None,
        created_at=utc(row.created_at),
        confirmed_at=utc(row.confirmed_at) if row.confirmed_at else None,
    )
