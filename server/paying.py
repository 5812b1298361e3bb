"""The node's side of payments: its keys and policy, the payment activities it handles from
peers, the offers it re-sends, and the actions its users take (request, pay, decline, cancel,
send). `payments/` decides; this module gives it connections, keys and a delivery queue.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorDirectory, ActorUnavailable
from federation.dispatch import PRIORITY_DIRECT, Dispatcher, InboundActivity, Outbound, Reject
from payments import requests, settlement, statements
from payments.money import AmountError, Currencies, format_amount, parse_amount
from payments.parties import (
    Message,
    NodeKey,
    Party,
    PaymentError,
    Policy,
    SettlementRejected,
    Signer,
)
from payments.peers import DefaultLimit
from payments.requests import RequestRecord, RequestState
from payments.settlement import SettlementRecord, SettlementState
from payments.tables import payment_requests
from protocol import payments as wire
from protocol.actors import RemoteActor
from protocol.as2 import host_of, id_of
from protocol.errors import ProtocolError
from protocol.multibase import decode_ed25519_multikey
from protocol.proofs import ProofError, proof_of
from server.clock import Clock
from server.config import Config, community_currencies
from server.identity.accounts import (
    SIGNING_KEY_FRESH,
    Account,
    instance_actor,
    public_keys,
    signing_key,
)
from server.social.chats import Chat, has_message_about
from server.social.distribution import notify
from server.social.events import emit
from server.social.graph import block_between
from server.social.posting import post_to_chat, publish_status
from server.social.remote_accounts import account_for_actor, upsert_remote_account
from server.storage.engine import Database
from server.storage.ids import new_id
from server.urls import Urls

log = logging.getLogger("kith.payments")
# Streaming events (on the `user` stream): the payload is the entity the payments API shows.
REQUEST_EVENT = "kith:payment_request"
TRANSFER_EVENT = "kith:transfer"
# Mastodon notification types (clients ignore types they do not know).
REQUEST_NOTIFICATION = "kith.payment_request"
PAYMENT_NOTIFICATION = "kith.payment_received"

IDEMPOTENCY_KEY_LENGTH_MAX = 200


@dataclass(frozen=True)
class PayeeNode:
    """Where a payee's money is settled: their node's actor (ours for local payees)."""

    actor: str
    account: Account


class Payments:
    """Payments for one node, wired to its database, federation and clock."""

    def __init__(
        self, config: Config, db: Database, urls: Urls, clock: Clock, directory: ActorDirectory
    ) -> None:
        self.db = db
        self.urls = urls
        self.clock = clock
        self.directory = directory
        self.currencies = Currencies(community_currencies(config))
        self.request_lifetime = timedelta(minutes=config.payments.request_expiry_minutes)
        self.in_doubt_after = timedelta(hours=config.payments.in_doubt_hours)
        self.statement_interval = timedelta(minutes=config.payments.statement_interval_minutes)
        self.policy = Policy(
            currencies=self.currencies,
            default_credit_limit=default_credit_limit(config, self.currencies),
            accept_direct_transfers=config.payments.accept_direct_transfers,
            acceptance_window=timedelta(hours=config.payments.transfer_acceptance_hours),
            transfer_max=_per_currency(config.payments.transfer_max, self.currencies),
            daily_max=_per_currency(config.payments.daily_max, self.currencies),
        )
        self._node_key: tuple[datetime, NodeKey] | None = None  # (read again after, key)

    @property
    def node_actor(self) -> str:
        return f"{self.urls.base_url}/actor"

    async def node_key(self) -> NodeKey:
        """The instance actor's Ed25519 key: it signs transfers and decisions (read again after
        SIGNING_KEY_FRESH, as the delivery keys are)."""
        now = self.clock()
        if self._node_key is None or now >= self._node_key[0]:
            async with self.db.read() as conn:
                account = await instance_actor(conn)
                assert account is not None, "the node has no instance actor"
                key = await signing_key(conn, account.id)
            node_key = NodeKey(
                self.node_actor,
                f"{self.node_actor}#{key.fragment}",
                self.urls.base_url,
                key.seed,
            )
            self._node_key = (now + SIGNING_KEY_FRESH, node_key)
        return self._node_key[1]

    async def published_keys(self, actor_uri: str) -> dict[str, bytes]:
        """The Ed25519 keys an actor publishes (ours from the database, others' as fetched);
        empty if it cannot be fetched now."""
        async with self.db.read() as conn:
            if actor_uri == self.node_actor:
                account = await instance_actor(conn)
            else:
                account = await account_for_actor(conn, actor_uri, self.urls.base_url)
            if account is not None and account.is_local:
                keys = (await public_keys(conn, account.id)).ed25519_keys
                return {f"{actor_uri}#{fragment}": public for fragment, public in keys}
        if actor_uri.startswith(self.urls.base_url + "/"):
            return {}
        try:
            return _ed25519_keys((await self.directory.get(actor_uri)).keys)
        except ActorUnavailable:
            return {}

    def party(self, account: Account) -> Party:
        return Party(self.urls.actor(account), account.id if account.is_local else None)

    # --- inbound -------------------------------------------------------------------------

    def register(self, dispatcher: Dispatcher) -> None:
        # Offers and statements are answered in the HTTP response when the peer asks (the
        # decisions carry their own proofs); answers are taken either way.
        keys, question, answer = self.sender_keys, {"answers_now": True}, {"takes_answers": True}
        dispatcher.route("Offer", wire.is_transfer_offer, self.on_offer, keys, **question)
        dispatcher.route("Accept", self._names_our_transfer, self.on_decision, keys, **answer)
        dispatcher.route("Reject", self._names_our_transfer, self.on_decision, keys, **answer)
        dispatcher.route(
            "TentativeAccept", self._names_our_transfer, self.on_decision, keys, **answer
        )
        dispatcher.route("Reject", self._names_our_request, self.on_decline)
        dispatcher.route("Create", _carries_payment_request, self.on_payment_request, self._sender)
        dispatcher.route("Create", _carries_statement, self.on_statement, keys, **question)
        dispatcher.route(
            "Accept", self._names_our_statement, self.on_statement_answer, keys, **answer
        )
        dispatcher.route(
            "Reject", self._names_our_statement, self.on_statement_answer, keys, **answer
        )

    def _names_our_transfer(self, activity: dict[str, Any]) -> bool:
        target = id_of(activity.get("object")) or ""
        return target.startswith(f"{self.urls.base_url}/payments/transfers/")

    def _names_our_request(self, activity: dict[str, Any]) -> bool:
        target = id_of(activity.get("object")) or ""
        return target.startswith(f"{self.urls.base_url}/payments/requests/")

    def _names_our_statement(self, activity: dict[str, Any]) -> bool:
        target = id_of(activity.get("object")) or ""
        return target.startswith(f"{self.urls.base_url}/payments/statements/")

    async def sender_keys(self, item: InboundActivity) -> dict[str, bytes]:
        return (await self._sender(item))[1]

    async def _sender(self, item: InboundActivity) -> tuple[RemoteActor, dict[str, bytes]]:
        """The sender and its published Ed25519 keys; fetched again once if the proof names
        a key we do not have (it may have rotated)."""
        signed = item.activity.get("object") if item.activity_type in ("Offer", "Create") else None
        method = _proof_method(signed if isinstance(signed, dict) else item.activity)
        try:
            actor = await self.directory.get(item.actor_uri)
            if method is not None and method not in _ed25519_keys(actor.keys):
                actor = await self.directory.get(item.actor_uri, True)
        except ActorUnavailable as exc:
            raise Reject(f"the sender's keys cannot be fetched: {exc}") from None
        return actor, _ed25519_keys(actor.keys)

    async def on_offer(
        self, conn: AsyncConnection, item: InboundActivity, keys: Any, now: datetime
    ) -> list[Outbound]:
        node = await self.node_key()
        found: dict[str, Account | None] = {}

        async def account_of(uri: str) -> Account | None:
            if uri not in found:
                found[uri] = await account_for_actor(conn, uri, self.urls.base_url)
            return found[uri]

        async def payee_account(uri: str) -> int | None:
            account = await account_of(uri)
            usable = account is not None and account.is_local and account.deleted_at is None
            return account.id if usable else None  # type: ignore[union-attr]

        async def payee_refused(uri: str) -> str | None:
            account = await account_of(uri)
            suspended = account is not None and account.is_local and account.is_suspended
            return "the payee's account is suspended" if suspended else None

        try:
            messages = await settlement.offer_received(
                conn, node, item.activity, item.actor_uri, keys, payee_account, self.policy,
                now, new_id, payee_refused,
            )  # fmt: skip
        except (SettlementRejected, ProtocolError) as exc:
            raise Reject(str(exc)) from None
        record = await settlement.settlement_by_uri(conn, id_of(item.activity.get("object")) or "")
        if record is not None:
            await self._tell_about(conn, record)
        for message in messages:
            log.info(
                "transfer decided",
                extra={
                    "transfer": id_of(item.activity.get("object")),
                    "decision": message.activity["type"],
                },
            )
        return [self._outbound(message, redeliver=True) for message in messages]

    async def on_decision(
        self, conn: AsyncConnection, item: InboundActivity, keys: Any, now: datetime
    ) -> list[Outbound]:
        try:
            record = await settlement.decision_received(
                conn, item.activity, item.actor_uri, keys, now, new_id
            )
        except (SettlementRejected, ProtocolError) as exc:
            raise Reject(str(exc)) from None
        if record is None:
            raise Reject("the decision names none of our transfers")
        if record.state is SettlementState.PREPARED:
            log.info("transfer held for its payee to accept", extra={"transfer": record.uri})
        else:
            log.info(
                "transfer concluded", extra={"transfer": record.uri, "state": record.state.value}
            )
        await self._tell_about(conn, record)
        return []

    async def on_payment_request(
        self,
        conn: AsyncConnection,
        item: InboundActivity,
        sender: tuple[RemoteActor, dict[str, bytes]],
        now: datetime,
    ) -> list[Outbound]:
        actor, keys = sender
        document = item.activity["object"]
        payer_uri = id_of(document.get("payer"))
        payer = await account_for_actor(conn, payer_uri or "", self.urls.base_url)
        if payer is None or not payer.is_local:
            raise Reject("the payment request is not for a user of this node")
        if id_of(document.get("attributedTo")) != item.actor_uri:
            raise Reject("a payment request must come from its payee")
        payee = await upsert_remote_account(conn, actor, now)
        if await blocks_between(conn, payer.id, payee.id):
            raise Reject("the payer blocks the payee (or the other way round)")
        try:
            record = await requests.receive_request(
                conn, document, keys, self.party(payer), self.policy, now, new_id
            )
        except (SettlementRejected, ProtocolError) as exc:
            raise Reject(str(exc)) from None
        self.tell_request(conn, record)
        await notify(conn, payer.id, REQUEST_NOTIFICATION, payee.id, None, now)
        return []

    async def on_statement(
        self, conn: AsyncConnection, item: InboundActivity, keys: Any, now: datetime
    ) -> list[Outbound]:
        try:
            messages = await statements.statement_received(
                conn, await self.node_key(), item.activity, item.actor_uri, keys, now, new_id
            )
        except (SettlementRejected, ProtocolError) as exc:
            raise Reject(str(exc)) from None
        answer = messages[0].activity
        if answer["type"] == "Reject":
            log.error(
                "a peer's statement disagrees with our ledger: tell the operators",
                extra={
                    "peer": item.actor_uri,
                    "statement": answer["object"],
                    "problems": answer["content"],
                },
            )
        return [self._outbound(message) for message in messages]

    async def on_statement_answer(
        self, conn: AsyncConnection, item: InboundActivity, keys: Any, now: datetime
    ) -> list[Outbound]:
        try:
            state = await statements.answer_received(conn, item.activity, item.actor_uri, keys, now)
        except (SettlementRejected, ProtocolError) as exc:
            raise Reject(str(exc)) from None
        if state is None:
            raise Reject("the answer names none of our statements")
        if state == "disputed":
            log.error(
                "a peer disputes our statement: tell the operators",
                extra={"peer": item.actor_uri, "problems": str(item.activity.get("content"))},
            )
        return []

    async def propose_due(self, conn: AsyncConnection, now: datetime) -> list[Outbound]:
        """The periodic netting statements that are due (payments.statement_interval_minutes)."""
        if not self.statement_interval:
            return []
        node = await self.node_key()
        outbound: list[Outbound] = []
        for peer, currency in await statements.due(conn, node.actor, self.statement_interval, now):
            try:
                async with self.db.savepoint(conn):
                    _, messages = await statements.propose(conn, node, peer, currency, now, new_id)
            except statements.StatementError:
                continue  # nothing new since the last one
            log.info("statement proposed", extra={"peer": peer, "currency": currency})
            outbound += [self._outbound(message) for message in messages]
        return outbound

    async def propose_statement(
        self, conn: AsyncConnection, peer_host: str, currency: str, now: datetime
    ) -> tuple[dict[str, Any], list[Outbound]]:
        """A netting statement for the peer node at `peer_host` (its actor at /actor)."""
        scheme = self.urls.base_url.split("://", 1)[0]
        peer = f"{scheme}://{peer_host}/actor"
        statement, messages = await statements.propose(
            conn, await self.node_key(), peer, currency, now, new_id
        )
        return statement, [self._outbound(message) for message in messages]

    async def on_decline(
        self, conn: AsyncConnection, item: InboundActivity, _prefetched: Any, now: datetime
    ) -> list[Outbound]:
        request = await requests.request_by_uri(conn, id_of(item.activity.get("object")) or "")
        if request is None or not request.is_ours:
            raise Reject("no such payment request here")
        if request.payer_uri != item.actor_uri:
            raise Reject("only the request's payer may decline it")
        if await requests.end_request(conn, request, RequestState.DECLINED, now):
            self.tell_request(conn, request)
        return []

    @staticmethod
    def tell_request(conn: AsyncConnection, record: RequestRecord) -> None:
        """Streaming clients of the request's local payee and payer hear its new state."""
        parties = {record.payee_account_id, record.payer_account_id} - {None}
        emit(conn, [f"user:{party}" for party in sorted(parties)], REQUEST_EVENT, record.id)

    @staticmethod
    def tell_transfer(conn: AsyncConnection, record: SettlementRecord) -> None:
        """Streaming clients of the transfer's local payer and payee hear its new state."""
        parties = {record.payer_account_id, record.payee_account_id} - {None}
        emit(conn, [f"user:{party}" for party in sorted(parties)], TRANSFER_EVENT, record.id)

    async def _tell_about(
        self, conn: AsyncConnection, record: SettlementRecord, notify_payee: bool = True
    ) -> None:
        """Streaming clients hear of the transfer's state; its payee is notified when money
        arrives (or waits for them to take it)."""
        self.tell_transfer(conn, record)
        received = record.state in (
            SettlementState.ACCEPTED, SettlementState.POSTED, SettlementState.HELD,
        )  # fmt: skip
        if notify_payee and received and record.role != "payer" and record.payee_account_id:
            # Only from a payer this node knows: a notification names an account.
            payer = await account_for_actor(conn, record.payer_uri, self.urls.base_url)
            if payer is not None:
                await notify(
                    conn,
                    record.payee_account_id,
                    PAYMENT_NOTIFICATION,
                    payer.id,
                    None,
                    record.decided_at or record.created_at,
                )
        if record.request_uri is not None:
            request = await requests.request_by_uri(conn, record.request_uri)
            if request is not None:
                self.tell_request(conn, request)

    def _outbound(self, message: Message, redeliver: bool = False) -> Outbound:
        activity = message.activity
        return Outbound(
            activity=activity,
            signer_uri=self.node_actor,
            recipients=(message.to,),
            priority=PRIORITY_DIRECT,
            redeliver=redeliver,
            # A question (an offer, a statement): the peer may answer in its response.
            wants_answer=activity["type"] == "Offer" or _carries_statement(activity),
        )

    # --- background work -----------------------------------------------------------------

    async def resend(self, conn: AsyncConnection, now: datetime) -> tuple[int, list[Outbound]]:
        """Offers whose answer is overdue, to send again (status queries)."""
        messages = await settlement.resend_due(conn, await self.node_key(), now)
        return len(messages), [self._outbound(message) for message in messages]

    async def return_untaken(self, conn: AsyncConnection, now: datetime) -> list[Outbound]:
        """Held transfers their payees did not take in time go back to their payers."""
        outbound: list[Outbound] = []
        node = await self.node_key()
        for held in await settlement.held_past(conn, now):
            record, messages = await settlement.resolve_held(
                conn, node, held, False, "the payee did not accept it in time", now, new_id
            )
            log.info("transfer returned: not accepted in time", extra={"transfer": record.uri})
            await self._tell_about(conn, record, notify_payee=False)
            outbound += [self._outbound(message) for message in messages]
        return outbound

    async def expire(self, conn: AsyncConnection, now: datetime) -> int:
        """Record as expired the open requests whose time has passed."""
        changed = await conn.execute(
            update(payment_requests)
            .where(
                payment_requests.c.state == RequestState.OPEN.value,
                payment_requests.c.expires_at <= now,
            )
            .values(state=RequestState.EXPIRED.value, updated_at=now)
        )
        return changed.rowcount

    # --- what users do -------------------------------------------------------------------

    def amount(self, text: Any, code: Any) -> wire.Amount:
        """A decimal string and a currency code from a client, as an amount; AmountError says
        what is wrong."""
        if not isinstance(code, str) or not isinstance(text, str):
            raise AmountError("give the amount as a decimal string and a currency code")
        currency = self.currencies.get(code.strip().upper())
        return wire.Amount(currency.code, parse_amount(text, currency), currency.scale)

    async def payee_node(self, account: Account) -> str:
        """The node that settles for `account`: ours, or its Kith node's instance actor."""
        node = await self.kith_node_of(account)
        if node is None:
            raise PaymentError("that person's server does not take Kith payments")
        return node

    async def kith_node_of(self, account: Account) -> str | None:
        """The instance actor of `account`'s node if it takes Kith payments (it publishes an
        Ed25519 key for settlement), None if it does not; ActorUnavailable if it cannot be
        asked now."""
        if account.is_local:
            return self.node_actor
        actor_uri = self.urls.actor(account)
        scheme = actor_uri.split("://", 1)[0]
        node_uri = f"{scheme}://{host_of(actor_uri)}/actor"
        try:
            node = await self.directory.get(node_uri)
        except ActorUnavailable as exc:
            if exc.temporary:
                raise
            return None
        if node.actor_type != "Application" or not _ed25519_keys(node.keys):
            return None
        return node_uri

    async def create_request(
        self,
        conn: AsyncConnection,
        payee: Account,
        payer: Account,
        amount: wire.Amount,
        note: str,
        lifetime: timedelta | None,
        now: datetime,
        payer_takes_kith_payments: bool = True,
        context: str | None = None,
    ) -> tuple[RequestRecord, list[Outbound]]:
        """A signed request from a local payee; delivered to a remote payer's inbox, or, if
        the payer's server knows nothing of Kith payments, told to them in a direct message
        with the request's link. Made in a chat (`context`), the chat's own message carries
        that link."""
        if await blocks_between(conn, payer.id, payee.id):
            raise PaymentError("you cannot request money from this account")
        key = await signing_key(conn, payee.id)
        signer = Signer(f"{self.urls.actor(payee)}#{key.fragment}", key.seed)
        record = await requests.create_request(
            conn, await self.node_key(), self.party(payee), signer, self.party(payer), amount,
            note, now + (lifetime or self.request_lifetime), now, new_id, context,
        )  # fmt: skip
        self.tell_request(conn, record)
        if payer.is_local:
            await notify(conn, payer.id, REQUEST_NOTIFICATION, payee.id, None, now)
            return record, []
        if not payer_takes_kith_payments:
            if context is not None:
                return record, []
            return record, await self._request_by_message(conn, payee, payer, record, now)
        create = {
            "@context": wire.PAYMENT_CONTEXT,
            "type": "Create",
            "id": f"{record.uri}/activity",
            "actor": record.payee_uri,
            "to": [record.payer_uri],
            "object": record.document,
        }
        outbound = Outbound(create, record.payee_uri, (record.payer_uri,), PRIORITY_DIRECT)  # type: ignore[arg-type]
        return record, [outbound]

    async def _request_by_message(
        self,
        conn: AsyncConnection,
        payee: Account,
        payer: Account,
        record: RequestRecord,
        now: datetime,
    ) -> list[Outbound]:
        """A direct post from the payee to the payer naming the amount, with the link."""
        amount = format_amount(record.amount, self.currencies.get(record.currency))
        note = f" for {record.summary.strip()}" if record.summary.strip() else ""
        text = (
            f"@{self.urls.handle(payer)} I am asking you for {amount} {record.currency}{note}. "
            f"The payment request: {record.uri}"
        )
        _, outbound = await publish_status(
            conn, self.urls, payee, text, now, visibility="direct", mentions=[payer]
        )
        return outbound

    async def request_in_chat(
        self,
        conn: AsyncConnection,
        payee: Account,
        payer: Account,
        chat: Chat,
        amount: wire.Amount,
        note: str,
        lifetime: timedelta | None,
        now: datetime,
        payer_takes_kith_payments: bool = True,
    ) -> tuple[RequestRecord, list[Outbound]]:
        """A request made in a chat: it carries the chat's context, and the chat gets the
        payee's message about it, whose text has the link (what other servers show)."""
        record, outbound = await self.create_request(
            conn, payee, payer, amount, note, lifetime, now, payer_takes_kith_payments,
            context=chat.context_uri,
        )  # fmt: skip
        shown = self.shown(record.amount, record.currency)
        text = f"Requested {shown} from @{self.urls.handle(payer)}{_about(note)}. "
        text += f"Pay it here: {record.uri}"
        _, told = await post_to_chat(
            conn, self.urls, payee, chat, text, now, payment_uri=record.uri
        )
        return record, outbound + told

    async def send_in_chat(
        self,
        conn: AsyncConnection,
        payer: Account,
        payee: PayeeNode,
        chat: Chat,
        amount: wire.Amount,
        transfer_uri: str,
        note: str,
        now: datetime,
    ) -> tuple[SettlementRecord, list[Outbound]]:
        """Money sent in a chat: the chat gets the payer's message about it (once, however
        often the same transfer is asked for again)."""
        sent, outbound = await self.send(conn, payer, payee, amount, transfer_uri, now)
        if await has_message_about(conn, sent.uri):
            return sent, outbound
        shown = self.shown(sent.amount, sent.currency)
        text = f"Sent {shown} to @{self.urls.handle(payee.account)}{_about(note)}."
        _, told = await post_to_chat(conn, self.urls, payer, chat, text, now, payment_uri=sent.uri)
        return sent, outbound + told

    def shown(self, minor: int, currency: str) -> str:
        """An amount as people read it: `12.50 EUR`."""
        return f"{format_amount(minor, self.currencies.get(currency))} {currency}"

    def transfer_uri(self, payer: Account, idempotency_key: str | None) -> str:
        """The id of a new transfer: derived from the client's Idempotency-Key, so that a
        repeated request names the same transfer."""
        if idempotency_key is None:
            token = uuid.uuid4().hex
        else:
            token = hashlib.sha256(f"{payer.id}:{idempotency_key}".encode()).hexdigest()[:32]
        return f"{self.urls.base_url}/payments/transfers/{token}"

    async def pay(
        self,
        conn: AsyncConnection,
        payer: Account,
        request: RequestRecord,
        transfer_uri: str,
        now: datetime,
    ) -> tuple[SettlementRecord, list[Outbound]]:
        record, messages = await settlement.pay_request(
            conn, await self.node_key(), request, self.party(payer), transfer_uri, self.policy,
            now, new_id,
        )  # fmt: skip
        await self._tell_about(conn, record)
        return record, [self._outbound(message) for message in messages]

    async def send(
        self,
        conn: AsyncConnection,
        payer: Account,
        payee: PayeeNode,
        amount: wire.Amount,
        transfer_uri: str,
        now: datetime,
    ) -> tuple[SettlementRecord, list[Outbound]]:
        record, messages = await settlement.send_transfer(
            conn, await self.node_key(), self.party(payer), self.party(payee.account),
            payee.actor, amount, transfer_uri, self.policy, now, new_id,
        )  # fmt: skip
        await self._tell_about(conn, record)
        return record, [self._outbound(message) for message in messages]

    async def answer_transfer(
        self,
        conn: AsyncConnection,
        payee: Account,
        record: SettlementRecord,
        take: bool,
        now: datetime,
    ) -> tuple[SettlementRecord, list[Outbound]]:
        """The payee takes money waiting for them, or sends it back."""
        if record.payee_account_id != payee.id or record.role == "payer":
            raise PaymentError("only the payee may accept or decline a transfer")
        if record.state is not SettlementState.HELD:
            raise PaymentError("this transfer is not waiting for you to accept it")
        reason = "" if take else "the payee declined it"
        decided, messages = await settlement.resolve_held(
            conn, await self.node_key(), record, take, reason, now, new_id
        )
        await self._tell_about(conn, decided, notify_payee=False)
        return decided, [self._outbound(message) for message in messages]

    async def decline(
        self, conn: AsyncConnection, payer: Account, request: RequestRecord, now: datetime
    ) -> list[Outbound]:
        """The payer says no; the payee's node hears of it."""
        if request.payer_account_id != payer.id:
            raise PaymentError("only the payer may decline a request")
        if not await requests.end_request(conn, request, RequestState.DECLINED, now):
            raise PaymentError(f"the request is already {request.state(now).value}")
        self.tell_request(conn, request)
        if request.is_ours:
            return []
        reject = {
            "@context": wire.PAYMENT_CONTEXT,
            "type": "Reject",
            "id": f"{self.urls.actor(payer)}#declined/{new_id(now)}",
            "actor": self.urls.actor(payer),
            "to": [request.payee_uri],
            "object": request.uri,
        }
        return [Outbound(reject, self.urls.actor(payer), (request.payee_uri,), PRIORITY_DIRECT)]

    async def cancel(
        self, conn: AsyncConnection, payee: Account, request: RequestRecord, now: datetime
    ) -> None:
        if not request.is_ours or request.payee_account_id != payee.id:
            raise PaymentError("only the payee may cancel a request")
        if not await requests.end_request(conn, request, RequestState.CANCELLED, now):
            raise PaymentError(f"the request is already {request.state(now).value}")
        self.tell_request(conn, request)


def _about(note: str) -> str:
    return f" for {note.strip()}" if note.strip() else ""


def default_credit_limit(config: Config, currencies: Currencies) -> DefaultLimit:
    """The configured limit (whole units) in each currency's minor units."""
    in_currency = _per_currency(config.payments.default_credit_limit, currencies)
    return lambda _peer, code: in_currency(code)


def _per_currency(whole_units: str, currencies: Currencies) -> Callable[[str], int]:
    """A configured amount in whole units, as minor units of any currency."""
    whole = int(whole_units.strip())

    def in_currency(code: str) -> int:
        try:
            return whole * 10 ** currencies.get(code).scale
        except AmountError:
            return 0  # a currency no longer configured

    return in_currency


async def blocks_between(conn: AsyncConnection, one: int, other: int) -> bool:
    """Whether either account blocks the other (no requests pass between them)."""
    return (
        await block_between(conn, one, other) is not None
        or await block_between(conn, other, one) is not None
    )


def _carries_statement(activity: dict[str, Any]) -> bool:
    target = activity.get("object")
    return isinstance(target, dict) and target.get("type") == "Statement"


def _carries_payment_request(activity: dict[str, Any]) -> bool:
    target = activity.get("object")
    return isinstance(target, dict) and target.get("type") == "PaymentRequest"


def _proof_method(document: dict[str, Any]) -> str | None:
    try:
        return proof_of(document)["verificationMethod"]
    except ProofError:
        return None


def _ed25519_keys(keys: Any) -> dict[str, bytes]:
    return {
        key.key_id: decode_ed25519_multikey(key.public_key)
        for key in keys
        if key.algorithm == "ed25519"
    }
