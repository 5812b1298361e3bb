"""What every payment step works with: this node's key, the people in a payment, the node's
policy, the messages it returns for sending, and the errors that say why something stopped."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from payments import peers
from payments.money import AMOUNT_MAX, Currencies
from protocol import payments as wire
from protocol.as2 import host_of, same_origin
from protocol.proofs import ProofError, proof_of, sign_object, verify_object

# How long a payer's node gives the payee's node to decide an offer before asking again.
OFFER_LIFETIME = timedelta(minutes=2)


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
    # Direct transfers wait this long for their payee to take them (0: credited at once);
    # one not taken by then goes back to its payer.
    acceptance_window: timedelta = timedelta(0)
    # Per currency, in minor units; 0: no limit. One payment, in or out; a user's day, out.
    transfer_max: CurrencyLimit = lambda _currency: 0
    daily_max: CurrencyLimit = lambda _currency: 0


@dataclass(frozen=True)
class Message:
    """An activity for another node's actor (the caller signs and delivers it)."""

    to: str
    activity: dict[str, Any]


# The ledger owner of money outside the system: deposits come from it, withdrawals and
# settlements paid to other operators go to it (the one account besides peers that may go
# below zero).
EXTERNAL_OWNER = "external"


def user_owner(account_id: int) -> str:
    """The ledger owner of a local user's wallet."""
    return f"user:{account_id}"


def peer_owner(peer_actor: str) -> str:
    """The ledger owner of what a peer node and we owe each other (one per host)."""
    return peers.peer_owner(host_of(peer_actor))


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


def sign_as_node(node: NodeKey, document: dict[str, Any], now: datetime) -> dict[str, Any]:
    return sign_object(document, node.seed, node.key_id, wire.format_time(now))


def utc(moment: datetime) -> datetime:
    """A stored timestamp as aware UTC (SQLite hands them back naive; they were UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def currency_of(policy: Policy, amount: wire.Amount) -> object | None:
    try:
        currency = policy.currencies.get(amount.currency)
    except ValueError:
        return None
    return currency if currency.scale == amount.scale else None


def amount_in(policy: Policy, code: str, minor: int) -> wire.Amount:
    return wire.Amount(code, minor, policy.currencies.get(code).scale)


def check_amount(minor: int) -> None:
    if not 0 < minor <= AMOUNT_MAX:
        raise PaymentError("the amount must be above zero and within the node's bounds")
