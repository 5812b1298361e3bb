"""Netting statements between two nodes (reference §6.6): both sign what they owe each other.

For a pair of nodes and a currency, one node (the one whose actor id sorts first, so that two
proposals never race) periodically proposes a statement: as of a moment a while ago (so that
every payment decided before it has concluded on both sides), what the other node owes it in
all, and every payment decided since the previous agreed statement, with a digest of them. The
statements form a chain: each names its sequence number and the digest of the previous agreed
one. The peer recomputes the same from its own records: if they agree it answers with an Accept
that embeds the proposer-signed statement inside its own signed activity, so both hold a doubly
signed document; if not, a Reject naming the payments that differ. A mismatch means a bug or
lost data: it is kept and raised to the operator, never corrected automatically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.ledger import NewId
from payments.parties import Message, NodeKey, SettlementRejected, utc, verify_proof
from payments.settlement import SettlementState
from payments.tables import peer_settlements, peer_statements, settlements
from protocol import payments as wire
from protocol.as2 import host_of, id_of
from protocol.proofs import sign_object

# Payments decided less than this long ago are left to the next statement: they may still be
# on their way to the payer's node.
STATEMENT_LAG = timedelta(minutes=10)
_SETTLED = (SettlementState.POSTED.value, SettlementState.ACCEPTED.value)


class StatementError(Exception):
    """A statement this node cannot propose now; the message says why."""


@dataclass(frozen=True)
class View:
    """One node's records for a peer and currency: what the peer owes it up to `as_of`; the
    payments decided in (since, as_of], as (transfer id, amount, True if to this node); and
    the settlements between the operators confirmed in that window, as (settlement id,
    amount, True if paid to this node)."""

    owed_to_us: int
    transfers: tuple[tuple[str, int, bool], ...]
    settlements: tuple[tuple[str, int, bool], ...] = ()

    @property
    def digest(self) -> str:
        return wire.digest({"transfers": [list(t) for t in self.transfers]})


def proposer_of(ours: str, theirs: str) -> str:
    """Which of two node actors proposes their statements (the first in sort order)."""
    return min(ours, theirs)


async def view(
    conn: AsyncConnection, peer_actor: str, currency: str, since: datetime | None, as_of: datetime
) -> View:
    rows = await conn.execute(
        select(
            settlements.c.uri,
            settlements.c.role,
            settlements.c.amount,
            settlements.c.decided_at,
            settlements.c.peer,
        ).where(
            settlements.c.peer == peer_actor,
            settlements.c.currency == currency,
            settlements.c.state.in_(_SETTLED),
            settlements.c.decided_at <= as_of,
        )
    )
    owed, window = 0, []
    for row in rows:
        to_us = row.role == "payee"
        owed += row.amount if to_us else -row.amount
        decided_at = utc(row.decided_at)
        if since is None or decided_at > since:
            window.append((row.uri, row.amount, to_us))
    # Real money between the operators, once the creditor confirmed it (both record that
    # moment, to the second, from its signed Accept).
    settled = await conn.execute(
        select(
            peer_settlements.c.uri,
            peer_settlements.c.role,
            peer_settlements.c.amount,
            peer_settlements.c.confirmed_at,
        ).where(
            peer_settlements.c.peer == host_of(peer_actor),
            peer_settlements.c.currency == currency,
            peer_settlements.c.state == "confirmed",
            peer_settlements.c.confirmed_at <= as_of,
        )
    )
    paid = []
    for row in settled:
        to_us = row.role == "creditor"
        owed += -row.amount if to_us else row.amount
        if since is None or utc(row.confirmed_at) > since:
            paid.append((row.uri, row.amount, to_us))
    return View(owed, tuple(sorted(window)), tuple(sorted(paid)))


async def propose(
    conn: AsyncConnection,
    node: NodeKey,
    peer_actor: str,
    currency: str,
    now: datetime,
    new_id: NewId,
) -> tuple[dict[str, Any], list[Message]]:
    """A new statement for the peer (signed, stored as proposed) and the Create to send."""
    if proposer_of(node.actor, peer_actor) != node.actor:
        raise StatementError(f"statements with {host_of(peer_actor)} are proposed by that node")
    await _one_proposer_at_a_time(conn, peer_actor, currency)
    if await _pending(conn, peer_actor, currency):
        raise StatementError("the previous statement has not been answered yet")
    previous = await _last_agreed(conn, peer_actor, currency)
    since = utc(previous.as_of) if previous else None
    as_of = _whole_second(now - STATEMENT_LAG)
    if since is not None and as_of <= since:
        raise StatementError("nothing new to state yet")
    ours = await view(conn, peer_actor, currency, since, as_of)
    row_id = new_id(now)
    statement = {
        "@context": wire.PAYMENT_CONTEXT,
        "type": "Statement",
        "id": f"{node.base_url}/payments/statements/{row_id}",
        "attributedTo": node.actor,
        "to": [peer_actor],
        "currency": currency,
        "sequence": (previous.sequence + 1) if previous else 1,
        "previousStatement": previous.digest if previous else None,
        "since": wire.format_time(since) if since else None,
        "asOf": wire.format_time(as_of),
        "owedToIssuer": str(ours.owed_to_us),
        "transfers": [
            {"id": uri, "amount": str(amount), "toIssuer": to_us}
            for uri, amount, to_us in ours.transfers
        ],
        "transfersDigest": ours.digest,
        "settlements": [
            {"id": uri, "amount": str(amount), "paidToIssuer": to_us}
            for uri, amount, to_us in ours.settlements
        ],
    }
    signed = sign_object(statement, node.seed, node.key_id, wire.format_time(now))
    await _store(conn, row_id, signed, peer_actor, "issuer", "proposed", now)
    create = {
        "@context": wire.PAYMENT_CONTEXT,
        "type": "Create",
        "id": f"{signed['id']}/activity",
        "actor": node.actor,
        "to": [peer_actor],
        "object": signed,
    }
    return signed, [Message(peer_actor, create)]


async def statement_received(
    conn: AsyncConnection,
    node: NodeKey,
    activity: dict[str, Any],
    sender: str,
    sender_keys: dict[str, bytes],
    now: datetime,
    new_id: NewId,
) -> list[Message]:
    """Check a peer's statement against our records; answer Accept (countersigned) or Reject."""
    statement = activity.get("object")
    if not isinstance(statement, dict) or statement.get("type") != "Statement":
        raise SettlementRejected("the Create carries no Statement")
    if id_of(statement.get("attributedTo")) != sender or activity.get("actor") != sender:
        raise SettlementRejected("a statement must come from the node that issued it")
    verify_proof(statement, sender_keys, sender)
    if proposer_of(node.actor, sender) != sender:
        raise SettlementRejected("statements between us are proposed by this node")
    problems = await _disagreements(conn, sender, statement)
    row_id = new_id(now)
    state = "disputed" if problems else "agreed"
    await _store(conn, row_id, statement, sender, "counterparty", state, now)
    answer_id = f"{node.base_url}/payments/statements/{row_id}/answer"
    if problems:
        answer = {
            "@context": wire.PAYMENT_CONTEXT,
            "type": "Reject",
            "id": answer_id,
            "actor": node.actor,
            "to": [sender],
            "object": statement["id"],
            "content": "; ".join(problems)[:4000],
        }
    else:
        answer = {
            "@context": wire.PAYMENT_CONTEXT,
            "type": "Accept",
            "id": answer_id,
            "actor": node.actor,
            "to": [sender],
            "object": statement,
            "result": {"statementDigest": wire.digest(statement)},
        }
    signed = sign_object(answer, node.seed, node.key_id, wire.format_time(now))
    await _answered(conn, statement["id"], "counterparty", signed, problems, state, now)
    return [Message(sender, signed)]


async def answer_received(
    conn: AsyncConnection,
    activity: dict[str, Any],
    sender: str,
    sender_keys: dict[str, bytes],
    now: datetime,
) -> str | None:
    """The peer's Accept or Reject of our statement: its new state, or None if not ours."""
    target = activity.get("object")
    statement_id = id_of(target)
    row = (
        await conn.execute(
            select(peer_statements).where(
                peer_statements.c.uri == (statement_id or ""),
                peer_statements.c.role == "issuer",
            )
        )
    ).first()
    if row is None:
        return None
    if row.peer != sender:
        raise SettlementRejected("the answer does not come from the statement's peer")
    verify_proof(activity, sender_keys, sender)
    if row.state != "proposed":
        return row.state
    if activity.get("type") == "Accept":
        if not isinstance(target, dict) or wire.digest(target) != wire.digest(
            json.loads(row.document)
        ):
            raise SettlementRejected("the Accept embeds another statement than ours")
        state, problems = "agreed", []
    else:
        state, problems = "disputed", [str(activity.get("content", ""))[:4000]]
    await _answered(conn, row.uri, "issuer", activity, problems, state, now)
    return state


async def _disagreements(
    conn: AsyncConnection, sender: str, statement: dict[str, Any]
) -> list[str]:
    """What in the statement our records do not show; empty if they agree."""
    currency = str(statement.get("currency", ""))
    try:
        as_of = wire.parse_time(statement.get("asOf"), "asOf")
        since = wire.parse_time(statement["since"], "since") if statement.get("since") else None
        owed_to_them = int(str(statement.get("owedToIssuer")))
        listed = {
            (str(t["id"]), int(str(t["amount"])), not bool(t["toIssuer"]))
            for t in statement.get("transfers", [])
        }
        paid = {
            (str(t["id"]), int(str(t["amount"])), not bool(t["paidToIssuer"]))
            for t in statement.get("settlements", [])
        }
    except (KeyError, TypeError, ValueError) as exc:
        return [f"the statement is malformed: {exc}"]
    problems = []
    previous = await _last_agreed(conn, sender, currency)
    expected_sequence = (previous.sequence + 1) if previous else 1
    if statement.get("sequence") != expected_sequence or statement.get("previousStatement") != (
        previous.digest if previous else None
    ):
        problems.append(f"the chain does not follow ours (we expect sequence {expected_sequence})")
    ours = await view(conn, sender, currency, since, as_of)
    if ours.owed_to_us != -owed_to_them:
        problems.append(f"we count {ours.owed_to_us} owed to us, not {-owed_to_them}")
    for uri, _, _ in sorted(set(ours.transfers) ^ listed):
        problems.append(f"transfer {uri} differs")
    for uri, _, _ in sorted(set(ours.settlements) ^ paid):
        problems.append(f"settlement {uri} differs")
    return problems


@dataclass(frozen=True)
class _Agreed:
    sequence: int
    digest: str
    as_of: datetime


async def _last_agreed(conn: AsyncConnection, peer_actor: str, currency: str) -> _Agreed | None:
    row = (
        await conn.execute(
            select(peer_statements)
            .where(
                peer_statements.c.peer == peer_actor,
                peer_statements.c.currency == currency,
                peer_statements.c.state == "agreed",
            )
            .order_by(peer_statements.c.sequence.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return _Agreed(row.sequence, wire.digest(json.loads(row.document)), utc(row.as_of))


async def _pending(conn: AsyncConnection, peer_actor: str, currency: str) -> bool:
    row = await conn.execute(
        select(peer_statements.c.id).where(
            peer_statements.c.peer == peer_actor,
            peer_statements.c.currency == currency,
            peer_statements.c.state == "proposed",
        )
    )
    return row.first() is not None


async def _one_proposer_at_a_time(conn: AsyncConnection, peer_actor: str, currency: str) -> None:
    """Until this transaction ends, no other proposes to the same peer in the same currency:
    two worker processes whose periodic proposals meet would otherwise both find none
    pending and send two statements with one sequence number. (SQLite has one writer.)"""
    if conn.dialect.name == "postgresql":
        name = f"statement {peer_actor} {currency}".encode()
        key = int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)
        await conn.execute(select(func.pg_advisory_xact_lock(key)))


async def due(
    conn: AsyncConnection, node_actor: str, interval: timedelta, now: datetime
) -> list[tuple[str, str]]:
    """(peer, currency) pairs this node should propose a statement to now: it is the proposing
    side, payments were settled with the peer (or its operator and ours settled) since the
    last statement, and that one is older than `interval` (and answered)."""
    pairs = await conn.execute(
        select(settlements.c.peer, settlements.c.currency)
        .where(settlements.c.peer.is_not(None), settlements.c.state.in_(_SETTLED))
        .distinct()
    )
    found = []
    for peer, currency in pairs.all():
        if proposer_of(node_actor, peer) != node_actor:
            continue
        last = (
            await conn.execute(
                select(
                    peer_statements.c.created_at, peer_statements.c.state, peer_statements.c.as_of
                )
                .where(peer_statements.c.peer == peer, peer_statements.c.currency == currency)
                .order_by(peer_statements.c.id.desc())
                .limit(1)
            )
        ).first()
        if last is not None and (last.state == "proposed" or now - utc(last.created_at) < interval):
            continue
        if await _settled_between(conn, peer, currency, last.as_of if last else None, now):
            found.append((peer, currency))
    return found


async def _settled_between(
    conn: AsyncConnection, peer: str, currency: str, after: datetime | None, now: datetime
) -> bool:
    """Whether a payment with the peer was decided, or a settlement between the operators
    confirmed, after `after` and long enough ago to be stated (so that a quiet pair does not
    exchange empty statements forever)."""
    stated_before = now - STATEMENT_LAG
    payments = select(settlements.c.id).where(
        settlements.c.peer == peer,
        settlements.c.currency == currency,
        settlements.c.state.in_(_SETTLED),
        settlements.c.decided_at <= stated_before,
    )
    operators = select(peer_settlements.c.id).where(
        peer_settlements.c.peer == host_of(peer),
        peer_settlements.c.currency == currency,
        peer_settlements.c.state == "confirmed",
        peer_settlements.c.confirmed_at <= stated_before,
    )
    if after is not None:
        payments = payments.where(settlements.c.decided_at > after)
        operators = operators.where(peer_settlements.c.confirmed_at > after)
    for query in (payments, operators):
        if (await conn.execute(query.limit(1))).first() is not None:
            return True
    return False


async def statements_with(conn: AsyncConnection, peer_actor: str) -> list[Any]:
    """Every statement with a peer, newest first (for operators)."""
    rows = await conn.execute(
        select(peer_statements)
        .where(peer_statements.c.peer == peer_actor)
        .order_by(peer_statements.c.id.desc())
    )
    return list(rows)


async def _store(
    conn: AsyncConnection,
    row_id: int,
    statement: dict[str, Any],
    peer_actor: str,
    role: str,
    state: str,
    now: datetime,
) -> None:
    await conn.execute(
        peer_statements.insert().values(
            id=row_id,
            uri=statement["id"],
            peer=peer_actor,
            currency=statement["currency"],
            role=role,
            sequence=statement["sequence"],
            state=state,
            as_of=wire.parse_time(statement["asOf"], "asOf"),
            document=json.dumps(statement),
            answer=None,
            problems=None,
            created_at=now,
            updated_at=now,
        )
    )


async def _answered(
    conn: AsyncConnection,
    uri: str,
    role: str,
    answer: dict[str, Any],
    problems: list[str],
    state: str,
    now: datetime,
) -> None:
    await conn.execute(
        update(peer_statements)
        .where(peer_statements.c.uri == uri, peer_statements.c.role == role)
        .values(
            state=state,
            answer=json.dumps(answer),
            problems="\n".join(problems) or None,
            updated_at=now,
        )
    )


def _whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)
