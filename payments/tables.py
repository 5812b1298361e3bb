"""The payments package's tables: the ledger's accounts and transfers.

Its own MetaData; the server's migrations include it (server.storage.schema.target_metadata).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One account per owner and currency. Balances are kept on the row (TigerBeetle's model) and
# always equal the sums of the transfers that touched it (`kith payments audit` recomputes them).
ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    # "user:<account id>", "peer:<domain>", "external", "fees", "escrow:<object>".
    Column("owner", String(300), nullable=False),
    Column("currency", String(12), nullable=False),
    # Only `external` (money entering and leaving through the operator) and peer accounts may
    # have more debits than credits; a wallet never goes below zero.
    Column("may_go_negative", Boolean, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("uq_ledger_accounts_owner_currency", "owner", "currency", unique=True),
    CheckConstraint(
        "may_go_negative OR credits_posted - debits_posted - debits_pending >= 0",
        name="never_negative",
    ),
)

# Append-only. A transfer's id is its idempotency key; a failed attempt is kept (with its
# failure) so that the id stays failed. `pending` transfers are resolved exactly once, by a
# later `post` or `void` transfer naming them.
ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("serial", BigInteger, nullable=False, unique=True),  # ledger order
    Column("kind", String(8), nullable=False),  # single, pending, post, void
    Column("debit_account_id", BigInteger, nullable=False),
    Column("credit_account_id", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(12), nullable=False),
    Column("pending_id", String(200), nullable=True),
    Column("memo", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("failure", String(40), nullable=True),  # None: applied
    # For pending transfers: pending, posted or voided (set once, by the resolving transfer).
    Column("pending_state", String(8), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ledger_transfers_debit_account_id_serial", "debit_account_id", "serial"),
    Index("ix_ledger_transfers_credit_account_id_serial", "credit_account_id", "serial"),
    CheckConstraint("amount > 0", name="positive_amount"),
    CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
)

# Payment requests this node made (the payee is local: `fulfillment` is its secret) or received
# for a local payer (verified before they were stored). `document` is the signed request.
payment_requests = Table(
    "payment_requests",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("uri", String(2048), nullable=False, unique=True),
    Column("payee_uri", String(2048), nullable=False),
    Column("payer_uri", String(2048), nullable=True),
    Column("payee_account_id", BigInteger, nullable=True),  # local payee
    Column("payer_account_id", BigInteger, nullable=True),  # local payer
    Column("currency", String(12), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("summary", Text, nullable=False),
    Column("condition", String(64), nullable=False),
    Column("fulfillment", String(64), nullable=True),
    Column("settlement_node", String(2048), nullable=False),
    Column("state", String(10), nullable=False),  # open, paid, declined, expired, cancelled
    Column("paid_by", String(2048), nullable=True),  # the accepted transfer
    Column("document", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_payment_requests_payee_account_id_id", "payee_account_id", "id"),
    Index("ix_payment_requests_payer_account_id_id", "payer_account_id", "id"),
    CheckConstraint("amount > 0", name="positive_amount"),
)

# Transfers between users, from either side. `role`: `payer` (ours to offer: prepared until the
# payee node decides, then posted or voided), `payee` (we decided: accepted or rejected, once,
# forever), `local` (both users here: decided in one transaction). `uri` is the payer node's
# idempotency key; the signed offer and decision are kept as the receipt.
settlements = Table(
    "settlements",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("uri", String(2048), nullable=False, unique=True),
    Column("role", String(6), nullable=False),
    Column("state", String(10), nullable=False),
    Column("peer", String(2048), nullable=True),  # the other node's actor
    Column("request_uri", String(2048), nullable=True),
    Column("payer_uri", String(2048), nullable=False),
    Column("payee_uri", String(2048), nullable=False),
    Column("payer_account_id", BigInteger, nullable=True),
    Column("payee_account_id", BigInteger, nullable=True),
    Column("currency", String(12), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("code", String(4), nullable=True),  # why it was rejected
    Column("reason", Text, nullable=True),
    Column("fulfillment", String(64), nullable=True),
    Column("transfer", Text, nullable=False),  # the signed Transfer object
    Column("decision", Text, nullable=True),  # the signed Accept or Reject
    Column("attempts", BigInteger, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),  # payer: resend due
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Index("ix_settlements_payer_account_id_id", "payer_account_id", "id"),
    Index("ix_settlements_payee_account_id_id", "payee_account_id", "id"),
    Index("ix_settlements_next_attempt_at", "next_attempt_at"),
    CheckConstraint("amount > 0", name="positive_amount"),
)

# What the operator lets each peer node owe us, per currency (absent: the configured default).
peer_limits = Table(
    "peer_limits",
    metadata,
    Column("peer", String(300), primary_key=True),  # host[:port]
    Column("currency", String(12), primary_key=True),
    Column("credit_limit", BigInteger, nullable=False),
    # The most one payment from that node's users may be (None: the node-wide limit).
    Column("transfer_max", BigInteger, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("credit_limit >= 0", name="credit_limit_not_negative"),
)

# Netting statements with peer nodes (payments/statements.py): the proposer-signed statement
# and the peer's signed answer; a chain per peer and currency through the agreed ones.
peer_statements = Table(
    "peer_statements",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("uri", String(2048), nullable=False),
    Column("peer", String(2048), nullable=False),  # the other node's actor
    Column("currency", String(12), nullable=False),
    Column("role", String(12), nullable=False),  # issuer or counterparty
    Column("sequence", BigInteger, nullable=False),
    Column("state", String(10), nullable=False),  # proposed, agreed, disputed
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("document", Text, nullable=False),
    Column("answer", Text, nullable=True),
    Column("problems", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("uq_peer_statements_uri_role", "uri", "role", unique=True),
    Index("ix_peer_statements_peer_currency_sequence", "peer", "currency", "sequence"),
)

# Real money between operators, out of band (payments/peer_settlements.py): the debtor's
# signed Settlement and the creditor's signed confirmation. `debtor`: this node's operator paid
# (booked when recorded); `creditor`: the peer's operator says it paid (booked on confirmation).
peer_settlements = Table(
    "peer_settlements",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("uri", String(2048), nullable=False, unique=True),
    Column("peer", String(300), nullable=False),  # host[:port]
    Column("role", String(8), nullable=False),  # debtor or creditor
    Column("currency", String(12), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reference", String(200), nullable=False),  # the debtor operator's own record
    Column("state", String(12), nullable=False),  # sent, unconfirmed, confirmed
    Column("document", Text, nullable=False),
    Column("answer", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
    # One settlement per reference and peer, each way: recording it again is a repeat.
    Index("uq_peer_settlements_peer_role_reference", "peer", "role", "reference", unique=True),
    CheckConstraint("amount > 0", name="positive_amount"),
)
