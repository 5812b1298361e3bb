"""`kith wallet …` and `kith payments …`: the operator's side of the ledger."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from federation.delivery import enqueue
from payments import ledger, parties, peer_settlements, peers, settlement, statements
from payments.ledger import Outcome
from payments.money import AmountError, Currencies, Currency, format_amount, parse_amount
from payments.parties import user_owner
from protocol.payments import Amount
from server.cli_support import CommandError, load, say, with_database
from server.clock import utcnow
from server.config import Config, community_currencies
from server.identity.accounts import Account, find_account
from server.paying import Payments, default_credit_limit
from server.peer_settling import PeerSettling
from server.storage.engine import Database
from server.storage.ids import new_id
from server.urls import Urls
from server.wallets import WalletError, balances, deposit, withdraw


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    wallet = commands.add_parser("wallet", help="users' wallets: deposits, withdrawals, balances")
    sub = wallet.add_subparsers(title="wallet commands", metavar="COMMAND", required=True)
    for name, run, verb in (
        ("deposit", cmd_wallet_deposit, "credit a local user's wallet with money paid in to you"),
        ("withdraw", cmd_wallet_withdraw, "debit a local user's wallet with money you paid out"),
    ):
        command = sub.add_parser(
            name,
            parents=[common],
            help=verb,
            description=f"{verb.capitalize()}. AMOUNT is a decimal such as 12.50 in the "
            "currency's own scale; pass --reference with your own record's id so that running "
            "the command again (after a crash, say) cannot move the money twice.",
        )
        command.add_argument("name", help="local username")
        command.add_argument("amount", help="decimal amount, e.g. 12.50")
        command.add_argument("currency", help="ISO 4217 code, e.g. EUR")
        command.add_argument("--reference", help="your id for this movement (idempotency key)")
        command.set_defaults(run=run)
    balance = sub.add_parser("balance", parents=[common], help="a user's balances")
    balance.add_argument("name", help="local username")
    balance.set_defaults(run=cmd_wallet_balance)
    history = sub.add_parser("history", parents=[common], help="a user's wallet movements")
    history.add_argument("name", help="local username")
    history.add_argument("--limit", type=int, default=50, help="newest first (default 50)")
    history.set_defaults(run=cmd_wallet_history)

    payments = commands.add_parser("payments", help="the ledger as a whole")
    sub = payments.add_subparsers(title="payments commands", metavar="COMMAND", required=True)
    sub.add_parser(
        "audit",
        parents=[common],
        help="recompute every balance from the ledger's transfers and check its invariants",
        description="Recomputes every account's totals from the transfers, checks that wallets "
        "are not below zero and that each currency's accounts sum to zero, and that every "
        "payment's state agrees with the ledger (reservations, credits, requests paid once, "
        "fulfillments, settlements between operators). Exits 1 naming what is wrong, 0 when "
        "all is consistent.",
    ).set_defaults(run=cmd_payments_audit)
    in_doubt = sub.add_parser(
        "in-doubt",
        parents=[common],
        help="payments another node has not answered for too long; resolve one by hand",
        description="Lists payments from your users still waiting for the payee's node to decide "
        "after payments.in_doubt_hours. They stay reserved and the node keeps asking. If you "
        "know the outcome from the other operator, --post URI or --void URI with --reason "
        "settles it here (kept with the payment as an audited operator action).",
    )
    action = in_doubt.add_mutually_exclusive_group()
    action.add_argument("--post", metavar="URI", help="the payee's node took the money: pay it")
    action.add_argument("--void", metavar="URI", help="it never will: release the reservation")
    in_doubt.add_argument("--reason", default="", help="why (required with --post/--void)")
    in_doubt.set_defaults(run=cmd_payments_in_doubt)

    peers_parser = commands.add_parser("peers", help="other nodes: what they owe, their limits")
    sub = peers_parser.add_subparsers(title="peers commands", metavar="COMMAND", required=True)
    sub.add_parser(
        "list",
        parents=[common],
        help="every peer node with money between you, per currency",
        description="OWES US is what the peer's users have been paid by yours less the other "
        "way round (negative: you owe them); RESERVED is your users' payments to them waiting "
        "for their decision; LIMIT is how much they may owe you.",
    ).set_defaults(run=cmd_peers_list)
    limit = sub.add_parser(
        "limit",
        parents=[common],
        help="set how much a peer node may owe you in a currency",
        description="Payments from the peer's users that would make it owe you more than "
        "AMOUNT are refused (code T04). 0 refuses them all. Applies to new payments only.",
    )
    limit.add_argument("domain", help="the peer's host (host:port if not 443)")
    limit.add_argument("currency", help="ISO 4217 or community currency code")
    limit.add_argument("amount", help="decimal amount, e.g. 500.00")
    limit.add_argument(
        "--max-payment",
        metavar="AMOUNT",
        help="also refuse any one payment from its users above AMOUNT (code F03)",
    )
    limit.set_defaults(run=cmd_peers_limit)
    statement = sub.add_parser(
        "statement",
        parents=[common],
        help="propose a netting statement to a peer node, or show the statements with it",
        description="With CURRENCY: propose a statement of what the peer owes you and the "
        "payments since the last agreed one (the running node sends it; the peer answers by "
        "countersigning it or naming the payments that differ). Without: list the statements "
        "with the peer and any disagreement. Of two nodes, the one whose address sorts first "
        "proposes.",
    )
    statement.add_argument("domain", help="the peer's host (host:port if not 443)")
    statement.add_argument("currency", nargs="?", help="propose one in this currency")
    statement.set_defaults(run=cmd_peers_statement)
    settle = sub.add_parser(
        "settle",
        parents=[common],
        help="record money you paid a peer node's operator, and tell that node",
        description="Once you have paid the peer's operator (a bank transfer, cash), record it: "
        "what you owe the peer shrinks by AMOUNT now, and the running node sends the peer a "
        "signed Settlement, which its operator confirms when the money arrives. You cannot "
        "settle more than you owe. --reference is your record of the payment (a bank "
        "reference): the same reference again is the same settlement, never booked twice. "
        "A settlement is never reversed; correct a mistake with one the other way round.",
    )
    settle.add_argument("domain", help="the peer's host (host:port if not 443)")
    settle.add_argument("currency", help="ISO 4217 or community currency code")
    settle.add_argument("amount", help="decimal amount, e.g. 500.00")
    settle.add_argument(
        "--reference",
        metavar="REF",
        required=True,
        help="your record of the payment (idempotency key)",
    )
    settle.set_defaults(run=cmd_peers_settle)
    listed = sub.add_parser(
        "settlements",
        parents=[common],
        help="the settlements between you and a peer node, either way",
        description="Every settlement with the peer, newest first: PAID (you paid it: sent, "
        "then confirmed once its operator confirms) or RECEIVED (it says it paid you: "
        "unconfirmed until you run `kith peers confirm URI`, then confirmed).",
    )
    listed.add_argument("domain", help="the peer's host (host:port if not 443)")
    listed.set_defaults(run=cmd_peers_settlements)
    confirm = sub.add_parser(
        "confirm",
        parents=[common],
        help="confirm that a peer's settlement arrived: book it and tell the peer",
        description="Only once the money a peer node says its operator paid you is in your "
        "account: what the peer owes you shrinks by its amount, and the running node sends "
        "the peer your signed confirmation. URI is the settlement's id, as logged when it "
        "arrived and listed by `kith peers settlements`.",
    )
    confirm.add_argument("uri", help="the settlement's id")
    confirm.set_defaults(run=cmd_peers_confirm)


async def cmd_wallet_deposit(args: argparse.Namespace) -> int:
    return await _move(args, deposit, "deposited")


async def cmd_wallet_withdraw(args: argparse.Namespace) -> int:
    return await _move(args, withdraw, "withdrew")


def _currencies(config: Config) -> Currencies:
    return Currencies(community_currencies(config))


def _currency(known: Currencies, code: str) -> Currency:
    """A currency to print amounts in; one no longer configured shows in minor units."""
    try:
        return known.get(code)
    except AmountError:
        return Currency(code, 0)


async def _move(
    args: argparse.Namespace, operation: Callable[..., Awaitable[Outcome]], done: str
) -> int:
    config = load(args)
    try:
        currency = _currencies(config).get(args.currency.upper())
        minor = parse_amount(args.amount, currency)
    except AmountError as exc:
        raise CommandError(str(exc)) from None

    async def work(db: Database) -> int:
        try:
            async with db.transaction() as conn:
                account = await _local_user(conn, args.name)
                outcome = await operation(conn, account, minor, currency, utcnow(), args.reference)
                (wallet,) = [
                    b for b in await balances(conn, account) if b.currency == currency.code
                ]
        except WalletError as exc:
            raise CommandError(str(exc)) from None
        again = " (already done: nothing moved this time)" if outcome.replayed else ""
        amount = format_amount(minor, currency)
        say(f"{done} {amount} {currency.code} for {args.name}{again}")
        say(f"balance: {format_amount(wallet.balance, currency)} {currency.code}")
        return 0

    return await with_database(config, work)


async def cmd_wallet_balance(args: argparse.Namespace) -> int:
    config = load(args)
    known = _currencies(config)

    async def work(db: Database) -> int:
        async with db.read() as conn:
            found = await balances(conn, await _local_user(conn, args.name))
        if not found:
            say(f"{args.name} has no wallet yet (nothing deposited or received)")
            return 0
        say(f"{'currency':<9} {'balance':>20} {'available':>20} {'incoming':>20}")
        for b in found:
            currency = _currency(known, b.currency)
            say(
                f"{b.currency:<9} {format_amount(b.balance, currency):>20} "
                f"{format_amount(b.available, currency):>20} "
                f"{format_amount(b.incoming, currency):>20}"
            )
        return 0

    return await with_database(config, work)


async def cmd_wallet_history(args: argparse.Namespace) -> int:
    config = load(args)
    known = _currencies(config)

    async def work(db: Database) -> int:
        async with db.read() as conn:
            account = await _local_user(conn, args.name)
            rows = []
            for wallet in await ledger.accounts_of(conn, user_owner(account.id)):
                for moved in await ledger.history(conn, wallet, limit=args.limit):
                    sign = -1 if moved["debit_account_id"] == wallet.id else 1
                    rows.append((moved["serial"], wallet.currency, sign * moved["amount"], moved))
        if not rows:
            say(f"no movements in {args.name}'s wallet")
            return 0
        for _, code, amount, moved in sorted(rows, key=lambda r: r[0], reverse=True)[: args.limit]:
            when = moved["created_at"].strftime("%Y-%m-%d %H:%M")
            shown = format_amount(amount, _currency(known, code))
            say(f"{when}  {shown:>14} {code:<4} {moved['memo'] or moved['kind']}  {moved['id']}")
        return 0

    return await with_database(config, work)


async def cmd_payments_audit(args: argparse.Namespace) -> int:
    config = load(args)

    async def work(db: Database) -> int:
        async with db.read() as conn:
            problems = await ledger.audit(conn) + await settlement.audit(conn)
            problems += await peer_settlements.audit(conn)
            pending = await ledger.unresolved_pending(conn)
        for problem in problems:
            say(f"PROBLEM: {problem}")
        if problems:
            say(f"the ledger is NOT consistent: {len(problems)} problem(s)")
            return 1
        say(f"the ledger is consistent ({pending} transfer(s) pending)")
        return 0

    return await with_database(config, work)


async def _local_user(conn: AsyncConnection, name: str) -> Account:
    account = await find_account(conn, name)
    if account is None or account.is_instance_actor or account.is_deleted:
        raise CommandError(f"no local user named {name!r}")
    return account


async def cmd_payments_in_doubt(args: argparse.Namespace) -> int:
    config = load(args)
    known = _currencies(config)
    before = utcnow() - timedelta(hours=config.payments.in_doubt_hours)

    async def work(db: Database) -> int:
        if args.post or args.void:
            return await _resolve(db, args)
        async with db.read() as conn:
            found = await settlement.in_doubt(conn, before)
        if not found:
            say(f"no payment has waited more than {config.payments.in_doubt_hours} h")
            return 0
        for record in found:
            amount = format_amount(record.amount, _currency(known, record.currency))
            since = record.created_at.strftime("%Y-%m-%d %H:%M")
            say(f"{since}  {amount:>14} {record.currency:<4} to {record.payee_uri}  {record.uri}")
        say(f"{len(found)} payment(s) in doubt: still reserved; ask the other operator")
        return 1

    return await with_database(config, work)


async def _resolve(db: Database, args: argparse.Namespace) -> int:
    uri, post = (args.post, True) if args.post else (args.void, False)
    try:
        async with db.transaction() as conn:
            record = await settlement.resolve_by_operator(
                conn, uri, post, args.reason, utcnow(), new_id
            )
    except parties.PaymentError as exc:
        raise CommandError(str(exc)) from None
    say(f"{record.uri} is now {record.state.value} ({record.reason})")
    return 0


async def cmd_peers_list(args: argparse.Namespace) -> int:
    config = load(args)
    known = _currencies(config)
    default = default_credit_limit(config, known)

    async def work(db: Database) -> int:
        async with db.read() as conn:
            found = await peers.positions(conn, default)
        if not found:
            say("no money has moved between your users and another node's yet")
            return 0
        say(
            f"{'peer':<32} {'currency':<9} {'owes us':>16} {'reserved':>16} {'limit':>16}"
            f" {'max payment':>16}"
        )
        for p in found:
            currency = _currency(known, p.currency)
            most = "-" if p.transfer_max is None else format_amount(p.transfer_max, currency)
            say(
                f"{p.peer:<32} {p.currency:<9} {format_amount(p.owes_us, currency):>16} "
                f"{format_amount(p.reserved_for_them, currency):>16} "
                f"{format_amount(p.credit_limit, currency):>16} {most:>16}"
            )
        return 0

    return await with_database(config, work)


async def cmd_peers_limit(args: argparse.Namespace) -> int:
    config = load(args)
    host = _host(args.domain)
    try:
        currency = _currencies(config).get(args.currency.upper())
        minor = (
            0
            if args.amount.strip() in ("0", "0.0", "0.00")
            else parse_amount(args.amount, currency)
        )
        most = parse_amount(args.max_payment, currency) if args.max_payment else None
    except AmountError as exc:
        raise CommandError(str(exc)) from None

    async def work(db: Database) -> int:
        async with db.transaction() as conn:
            await peers.set_limits(conn, host, currency.code, minor, utcnow(), transfer_max=most)
        say(f"{host} may now owe you up to {format_amount(minor, currency)} {currency.code}")
        if most is not None:
            shown = format_amount(most, currency)
            say(f"each payment from its users at most {shown} {currency.code}")
        return 0

    return await with_database(config, work)


async def cmd_peers_statement(args: argparse.Namespace) -> int:
    config = load(args)
    host = args.domain.strip().lower()
    urls = Urls(base_url=config.base_url, domain=config.domain)
    peer = f"{config.base_url.split('://', 1)[0]}://{host}/actor"

    async def work(db: Database) -> int:
        if args.currency:
            return await _propose(config, db, urls, host, args.currency.upper())
        async with db.read() as conn:
            found = await statements.statements_with(conn, peer)
        if not found:
            say(f"no statements with {host} yet")
            return 0
        for row in found:
            when = row.as_of.strftime("%Y-%m-%d %H:%M")
            say(f"#{row.sequence} {row.currency} as of {when}: {row.state} ({row.role})")
            for problem in (row.problems or "").splitlines():
                say(f"    {problem}")
        return 1 if any(row.state == "disputed" for row in found) else 0

    return await with_database(config, work)


async def _propose(config: Config, db: Database, urls: Urls, host: str, currency: str) -> int:
    payments = Payments(config, db, urls, utcnow, directory=None)  # type: ignore[arg-type]
    now = utcnow()
    try:
        async with db.transaction() as conn:
            statement, outbound = await payments.propose_statement(conn, host, currency, now)
            if not sum([await enqueue(conn, item, new_id, now) for item in outbound]):
                raise statements.StatementError(f"this node has not dealt with {host}'s node yet")
    except statements.StatementError as exc:
        raise CommandError(str(exc)) from None
    owed = format_amount(int(statement["owedToIssuer"]), _currency(_currencies(config), currency))
    say(
        f"statement #{statement['sequence']} to {host}: {len(statement['transfers'])} new "
        f"payment(s); {host} owes you {owed} {currency} in all. The node sends it."
    )
    return 0


def _host(domain: str) -> str:
    host = domain.strip().lower()
    if not host or "/" in host or " " in host:
        raise CommandError(f"{domain!r} is not a host name")
    return host


def _peer_settling(config: Config, db: Database) -> PeerSettling:
    urls = Urls(base_url=config.base_url, domain=config.domain)
    return PeerSettling(Payments(config, db, urls, utcnow, directory=None))  # type: ignore[arg-type]


async def cmd_peers_settle(args: argparse.Namespace) -> int:
    config = load(args)
    host = _host(args.domain)

    try:
        currency = _currencies(config).get(args.currency.strip().upper())
        amount = Amount(currency.code, parse_amount(args.amount, currency), currency.scale)
    except AmountError as exc:
        raise CommandError(str(exc)) from None

    async def work(db: Database) -> int:
        settling, now = _peer_settling(config, db), utcnow()
        try:
            async with db.transaction() as conn:
                settled, outbound = await settling.settle(conn, host, amount, args.reference, now)
                queued = sum([await enqueue(conn, item, new_id, now) for item in outbound])
                if not queued:  # the booking is rolled back with it
                    raise CommandError(f"this node does not know {host}'s inbox yet")
        except parties.PaymentError as exc:
            raise CommandError(str(exc)) from None
        if settled.repeated:
            say(f"already recorded: nothing booked this time; the node sends it to {host} again")
        else:
            shown = format_amount(amount.minor, currency)
            say(f"you paid {host} {shown} {currency.code}: booked; the node tells {host}")
        say(settled.record.uri)
        return 0

    return await with_database(config, work)


async def cmd_peers_settlements(args: argparse.Namespace) -> int:
    config = load(args)
    host = _host(args.domain)
    known = _currencies(config)

    async def work(db: Database) -> int:
        async with db.read() as conn:
            found = await peer_settlements.settlements_with(conn, host)
        if not found:
            say(f"no settlements with {host} yet")
            return 0
        for record in found:
            when = record.created_at.strftime("%Y-%m-%d %H:%M")
            way = "paid" if record.role == peer_settlements.DEBTOR else "received"
            amount = format_amount(record.amount, _currency(known, record.currency))
            say(
                f"{when}  {way:<8} {amount:>14} {record.currency:<4} {record.state:<11} "
                f"{record.reference!r}  {record.uri}"
            )
        return 0

    return await with_database(config, work)


async def cmd_peers_confirm(args: argparse.Namespace) -> int:
    config = load(args)

    async def work(db: Database) -> int:
        settling = _peer_settling(config, db)
        now = utcnow()
        try:
            async with db.transaction() as conn:
                record, outbound = await settling.confirm(conn, args.uri.strip(), now)
                for item in outbound:
                    await enqueue(conn, item, new_id, now)
        except parties.PaymentError as exc:
            raise CommandError(str(exc)) from None
        amount = format_amount(record.amount, _currency(_currencies(config), record.currency))
        say(f"confirmed {amount} {record.currency} from {record.peer}: booked; the node tells it")
        return 0

    return await with_database(config, work)
