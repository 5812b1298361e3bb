"""Settlement between operators, wired to the node (payments/peer_settlements.py decides): a
peer's `Create{Settlement}` and its `Accept` of ours arrive through the dispatcher; the
operator's `kith peers settle` and `kith peers confirm` run through `settle` and `confirm`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from federation.dispatch import PRIORITY_DIRECT, Dispatcher, InboundActivity, Outbound, Reject
from payments import peer_settlements
from payments.money import format_amount
from payments.parties import Message, SettlementRejected
from payments.peer_settlements import DEBTOR, UNCONFIRMED, PeerSettlementRecord
from protocol import payments as wire
from protocol.as2 import id_of
from protocol.errors import ProtocolError
from server.paying import Payments
from server.storage.ids import new_id

log = logging.getLogger("kith.payments")


@dataclass(frozen=True)
class Settled:
    """A settlement the operator recorded; `repeated` if it was recorded before (nothing was
    booked this time; the Create is sent again)."""

    record: PeerSettlementRecord
    repeated: bool


class PeerSettling:
    """Settlements with peer nodes, on the node's payments (its key, policy and senders' keys)."""

    def __init__(self, payments: Payments) -> None:
        self.payments = payments

    def register(self, dispatcher: Dispatcher) -> None:
        # The sender's Ed25519 keys, fetched again once if the proof names a rotated key.
        keys = self.payments.sender_keys
        dispatcher.route("Create", wire.carries_settlement, self.on_settlement, keys)
        dispatcher.route("Accept", self._names_our_settlement, self.on_confirmation, keys)

    def _names_our_settlement(self, activity: dict[str, Any]) -> bool:
        target = id_of(activity.get("object")) or ""
        return target.startswith(f"{self.payments.urls.base_url}/payments/settlements/")

    def peer_actor(self, peer_host: str) -> str:
        """The instance actor of the peer node at `peer_host`."""
        scheme = self.payments.urls.base_url.split("://", 1)[0]
        return f"{scheme}://{peer_host}/actor"

    # --- from peers ----------------------------------------------------------------------

    async def on_settlement(
        self, conn: AsyncConnection, item: InboundActivity, keys: Any, now: datetime
    ) -> list[Outbound]:
        try:
            record, messages = await peer_settlements.settlement_received(
                conn, await self.payments.node_key(), item.activity, item.actor_uri, keys,
                self.payments.policy, now, new_id,
            )  # fmt: skip
        except (SettlementRejected, ProtocolError) as exc:
            raise Reject(str(exc)) from None
        if record.state == UNCONFIRMED:
            currency = self.payments.currencies.get(record.currency)
            log.warning(
                "a peer says it paid you %s %s (its reference: %s): confirm with "
                "`kith peers confirm %s` once the money arrived",
                format_amount(record.amount, currency),
                record.currency,
                record.reference,
                record.uri,
                extra={"peer": record.peer, "settlement": record.uri},
            )
        # Once confirmed, a repeat gets the confirmation again (the peer may have lost it).
        return [self._outbound(message, redeliver=True) for message in messages]

    async def on_confirmation(
        self, conn: AsyncConnection, item: InboundActivity, keys: Any, now: datetime
    ) -> list[Outbound]:
        try:
            record = await peer_settlements.confirmation_received(
                conn, item.activity, item.actor_uri, keys, now
            )
        except (SettlementRejected, ProtocolError) as exc:
            raise Reject(str(exc)) from None
        if record is None:
            raise Reject("the Accept names none of our settlements")
        log.info("settlement confirmed by the peer", extra={"settlement": record.uri})
        return []

    # --- what the operator does ----------------------------------------------------------

    async def settle(
        self,
        conn: AsyncConnection,
        peer_host: str,
        amount: wire.Amount,
        reference: str,
        now: datetime,
    ) -> tuple[Settled, list[Outbound]]:
        """Our operator paid the peer at `peer_host`: book it and send it the Settlement."""
        before = await peer_settlements.settlement_by_reference(
            conn, peer_host, DEBTOR, reference.strip()
        )
        record, message = await peer_settlements.record_payment_to_peer(
            conn, await self.payments.node_key(), self.peer_actor(peer_host), amount, reference,
            now, new_id,
        )  # fmt: skip
        repeated = before is not None
        return Settled(record, repeated), [self._outbound(message, redeliver=repeated)]

    async def confirm(
        self, conn: AsyncConnection, uri: str, now: datetime
    ) -> tuple[PeerSettlementRecord, list[Outbound]]:
        """Our operator says a peer's settlement arrived: book it and send the confirmation."""
        record, message = await peer_settlements.confirm_settlement(
            conn, await self.payments.node_key(), uri, now, new_id
        )
        return record, [self._outbound(message)]

    def _outbound(self, message: Message, redeliver: bool = False) -> Outbound:
        return Outbound(
            activity=message.activity,
            signer_uri=self.payments.node_actor,
            recipients=(message.to,),
            priority=PRIORITY_DIRECT,
            redeliver=redeliver,
        )
