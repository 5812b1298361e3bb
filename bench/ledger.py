"""Local durable transfers per second through the ledger, against the same run's bare bound.

Run: python bench/ledger.py [--transfers 3000] [--users 100] [--concurrency 16] [--runs 3]

A node's database (SQLite in a temporary directory, WAL, `synchronous=FULL`, migrated as
`kith init` does) holds `--users` wallets, each funded by an operator deposit. Each timed run
makes `--transfers` wallet-to-wallet payments of random amounts between random users through
`payments.ledger.apply`, each in its own write transaction committed durably before the next
is acknowledged, from `--concurrency` tasks at once (SQLite queues the writers). The bound is
measured in the same run, in the same process: the same durable transaction (insert the
transfer, debit with the balance check, credit, commit) written with the stdlib `sqlite3`
module on a copy of the same schema, no SQLAlchemy and no event loop. `kith payments audit`'s
check runs at the end. Target: the ledger at ≥ 20% of the bound (about 1,000/s here).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import pin, split_cpus, verdict

from payments.ledger import Kind, Transfer, apply, audit, open_account
from server.config import load_config
from server.node import open_database
from server.storage.engine import Database
from server.storage.ids import new_id

TARGET_SHARE = 0.20


async def prepare(data_dir: Path, users: int) -> tuple[Database, list[int]]:
    config = load_config(
        None, environ={}, overrides={"storage.data_dir": str(data_dir)}, cwd=data_dir
    )
    db = await open_database(config, initialize_empty=True)
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        external = await open_account(conn, "external", "EUR", new_id, now, may_go_negative=True)
        wallets = []
        for n in range(users):
            wallet = await open_account(conn, f"user:{n}", "EUR", new_id, now)
            deposit = Transfer(f"deposit:{n}", Kind.SINGLE, external.id, wallet.id, 10**9, "EUR")
            await apply(conn, deposit, new_id, now)
            wallets.append(wallet.id)
    return db, wallets


async def ledger_run(
    db: Database, wallets: list[int], transfers: int, concurrency: int, tag: str
) -> tuple[float, list[float]]:
    """Transfers per second through the ledger, and each one's latency (seconds)."""
    rng = random.Random(tag)
    planned = []
    for serial in range(transfers):
        debit, credit = rng.sample(wallets, 2)
        planned.append(
            Transfer(f"{tag}-{serial}", Kind.SINGLE, debit, credit, rng.randint(1, 9999), "EUR")
        )
    queue = iter(planned)
    latencies: list[float] = []

    async def worker() -> None:
        for transfer in queue:
            started = time.perf_counter()
            async with db.transaction() as conn:
                outcome = await apply(conn, transfer, new_id, datetime.now(UTC))
            assert outcome.ok, outcome
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return transfers / (time.perf_counter() - started), latencies


def bare_run(path: Path, wallets: list[int], transfers: int, tag: str) -> float:
    """The same durable transfers with the stdlib sqlite3 module: the bound."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    rng = random.Random(tag)
    now = datetime.now(UTC).isoformat()
    started = time.perf_counter()
    for serial in range(transfers):
        debit, credit = rng.sample(wallets, 2)
        amount = rng.randint(1, 9999)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO ledger_transfers (id, serial, kind, debit_account_id, credit_account_id,"
            " amount, currency, memo, content_hash, created_at) VALUES"
            " (?, ?, 'single', ?, ?, ?, 'EUR', '', '', ?)",
            (f"bare-{tag}-{serial}", new_id(datetime.now(UTC)), debit, credit, amount, now),
        )
        moved = conn.execute(
            "UPDATE ledger_accounts SET debits_posted = debits_posted + ? WHERE id = ? AND"
            " (may_go_negative OR credits_posted - debits_posted - debits_pending >= ?)",
            (amount, debit, amount),
        ).rowcount
        assert moved == 1
        conn.execute(
            "UPDATE ledger_accounts SET credits_posted = credits_posted + ? WHERE id = ?",
            (amount, credit),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return transfers / elapsed


async def measure(args: argparse.Namespace) -> None:
    cpu, _ = split_cpus()
    pin(cpu)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kith-bench-payments-") as tmp:
        db, wallets = await prepare(Path(tmp), args.users)
        path = Path(tmp) / "kith.db"
        try:
            for run in range(args.runs):
                per_s, latencies = await ledger_run(
                    db, wallets, args.transfers, args.concurrency, f"run{run}"
                )
                bound = await asyncio.to_thread(bare_run, path, wallets, args.transfers, f"{run}")
                latencies.sort()
                p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
                rows.append((per_s, bound, p99))
                print(
                    f"run {run + 1}: ledger {per_s:,.0f} transfers/s (p99 {p99:.1f} ms), "
                    f"bare sqlite3 {bound:,.0f}/s, share {per_s / bound:.1%}",
                    flush=True,
                )
            async with db.read() as conn:
                problems = await audit(conn)
        finally:
            await db.dispose()
    per_s = statistics.median(r[0] for r in rows)
    bound = statistics.median(r[1] for r in rows)
    share = statistics.median(r[0] / r[1] for r in rows)
    p99 = statistics.median(r[2] for r in rows)
    print(
        f"\nmedian of {len(rows)} runs of {args.transfers} transfers, {args.concurrency} tasks:\n"
    )
    print(f"{'figure':<48} {'value':>10}  target")
    print("-" * 72)
    print(f"{'bare sqlite3 durable transfers per s (bound)':<48} {bound:>10,.0f}  bound")
    print(f"{'ledger durable transfers per s':<48} {per_s:>10,.0f}")
    print(
        f"{'  as a share of the bound':<48} {share:>10.1%}  ≥ {TARGET_SHARE:.0%}: "
        f"{verdict(share, TARGET_SHARE)}"
    )
    print(f"{'  latency p99 (ms)':<48} {p99:>10.1f}")
    print(f"{'audit problems after all runs':<48} {len(problems):>10}  0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=3000, help="per timed run")
    parser.add_argument("--users", type=int, default=100, help="wallets")
    parser.add_argument("--concurrency", type=int, default=16, help="tasks paying at once")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (medians are printed)")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
