"""`kith wallet …` and `kith payments …`: the operator's side of the ledger."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from payments import ledger
from payments.ledger import Outcome
from payments.money import AmountError, Currencies, Currency, format_amount, parse_amount
from server.cli_support import CommandError, load, say, with_database
from server.clock import utcnow
from server.config import Config, community_currencies
from server.identity.accounts import Account, find_account
from server.storage.engine import Database
from server.wallets import WalletError, balances, deposit, wallet_owner, withdraw


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
        "are not below zero and that each currency's accounts sum to zero. Exits 1 naming "
        "what is wrong, 0 when the ledger is consistent.",
    ).set_defaults(run=cmd_payments_audit)


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
            for wallet in await ledger.accounts_of(conn, wallet_owner(account)):
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
            problems = await ledger.audit(conn)
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
