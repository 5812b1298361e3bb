"""`kith status`: what waits and what is wrong, read from the database (node running or not)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from federation import queues
from payments import overview, settlement
from payments.money import AmountError, Currencies, Currency, format_amount
from server.cli_support import CommandError, load, say
from server.clock import utcnow
from server.config import Config, community_currencies, redacted_database_url
from server.node import open_database


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser(
        "status",
        parents=[common],
        help="queues, failing hosts, payments in doubt, open requests, last statements",
        description="Reads the database (the node may be running or not) and prints: inbox "
        "items queued and failed; deliveries queued, due and how long the oldest due one has "
        "waited; remote hosts failing or marked unavailable, with their last failure; "
        "payments in doubt (unanswered for payments.in_doubt_hours; see `kith payments "
        "in-doubt`); payment requests open; the last netting statement with each peer. "
        "Exits 0 whatever it finds.",
    )
    status.add_argument("--json", action="store_true", help="one JSON object, for machines")
    status.set_defaults(run=cmd_status)


@dataclass(frozen=True)
class Status:
    """Everything `kith status` reports, as of `now`."""

    now: datetime
    database: str
    queues: queues.QueueDepths
    failing_hosts: list[queues.FailingHost]
    in_doubt_hours: int
    in_doubt: list[settlement.SettlementRecord]
    requests_open: int
    last_statements: list[overview.LastStatement]


async def read_status(config: Config, now: datetime) -> Status:
    """Read every figure in one read-only unit of work."""
    _check_database_exists(config)
    db = await open_database(config, initialize_empty=False)
    before = now - timedelta(hours=config.payments.in_doubt_hours)
    try:
        async with db.read() as conn:
            return Status(
                now=now,
                database=redacted_database_url(config.database.url),
                queues=await queues.queue_depths(conn, now),
                failing_hosts=await queues.failing_hosts(conn),
                in_doubt_hours=config.payments.in_doubt_hours,
                in_doubt=await settlement.in_doubt(conn, before),
                requests_open=(await overview.request_counts(conn)).get("open", 0),
                last_statements=await overview.last_statements(conn),
            )
    finally:
        await db.dispose()


def _check_database_exists(config: Config) -> None:
    """Refuse to create an SQLite file just to report that it is empty."""
    if config.database.url.startswith("sqlite"):
        path = Path(make_url(config.database.url).database or "")
        if not path.is_file():
            raise CommandError(f"no database at {path} yet: run `kith init` or `kith serve`")


async def cmd_status(args: argparse.Namespace) -> int:
    config = load(args)
    status = await read_status(config, utcnow())
    currencies = Currencies(community_currencies(config))
    if args.json:
        print(json.dumps(as_json(status, currencies), indent=2, sort_keys=True))
        return 0
    for line in as_text(status, currencies):
        say(line)
    return 0


def as_json(status: Status, currencies: Currencies) -> dict[str, Any]:
    """The status as plain JSON values: times in ISO 8601, amounts as decimal strings."""
    depths = status.queues
    return {
        "as_of": _iso(status.now),
        "database": status.database,
        "inbox": {
            "queued": depths.inbox_queued,
            "failed": depths.inbox_failed,
            "oldest_due_at": _iso(depths.inbox_oldest_due_at),
        },
        "deliveries": {
            "queued": depths.deliveries_queued,
            "due": depths.deliveries_due,
            "oldest_due_at": _iso(depths.deliveries_oldest_due_at),
            "oldest_due_seconds": _waited(status.now, depths.deliveries_oldest_due_at),
        },
        "hosts": {"failing": depths.hosts_failing, "unavailable": depths.hosts_unavailable},
        "failing_hosts": [_jsonable(asdict(host)) for host in status.failing_hosts],
        "payments_in_doubt": [
            {
                "uri": record.uri,
                "payer": record.payer_uri,
                "payee": record.payee_uri,
                "amount": format_amount(record.amount, _currency(currencies, record.currency)),
                "currency": record.currency,
                "created_at": _iso(record.created_at),
            }
            for record in status.in_doubt
        ],
        "in_doubt_hours": status.in_doubt_hours,
        "payment_requests_open": status.requests_open,
        "last_statements": [_jsonable(asdict(row)) for row in status.last_statements],
    }


def as_text(status: Status, currencies: Currencies) -> list[str]:
    """The status for a person, section by section."""
    depths, now = status.queues, status.now
    lines = [
        f"as of {_minute(now)} UTC, database {status.database}",
        f"inbox: {depths.inbox_queued} queued, {depths.inbox_failed} failed"
        + _oldest(now, depths.inbox_oldest_due_at, "oldest due"),
        f"deliveries: {depths.deliveries_queued} queued, {depths.deliveries_due} due"
        + _oldest(now, depths.deliveries_oldest_due_at, "oldest due"),
        "",
    ]
    lines += _hosts_section(status.failing_hosts)
    lines += ["", *_in_doubt_section(status, currencies), ""]
    lines.append(f"payment requests open: {status.requests_open}")
    lines += ["", *_statements_section(status.last_statements)]
    return lines


def _hosts_section(hosts: list[queues.FailingHost]) -> list[str]:
    if not hosts:
        return ["failing hosts: none"]
    lines = [
        f"failing hosts: {len(hosts)}",
        f"  {'host':<40} {'state':<12} {'days':>4}  {'last failure':<17} last success",
    ]
    for host in hosts:
        state = "unavailable" if host.is_unavailable else "failing"
        lines.append(
            f"  {host.host:<40} {state:<12} {host.failure_days:>4}  "
            f"{_minute(host.last_failure_at):<17} {_minute(host.last_success_at)}"
        )
    return lines


def _in_doubt_section(status: Status, currencies: Currencies) -> list[str]:
    if not status.in_doubt:
        return [f"payments in doubt: none (none unanswered for {status.in_doubt_hours} h)"]
    lines = [
        f"payments in doubt: {len(status.in_doubt)} (unanswered for {status.in_doubt_hours} h;"
        " `kith payments in-doubt` resolves them)"
    ]
    for record in status.in_doubt:
        amount = format_amount(record.amount, _currency(currencies, record.currency))
        lines.append(
            f"  {_minute(record.created_at)}  {amount:>14} {record.currency:<4} "
            f"to {record.payee_uri}  {record.uri}"
        )
    return lines


def _statements_section(rows: list[overview.LastStatement]) -> list[str]:
    if not rows:
        return ["last statements: none"]
    lines = [
        "last statements:",
        f"  {'peer':<40} {'currency':<9} {'#':>5} {'state':<9} {'role':<12} as of",
    ]
    for row in rows:
        lines.append(
            f"  {row.peer:<40} {row.currency:<9} {row.sequence:>5} {row.state:<9} "
            f"{row.role:<12} {_minute(row.as_of)}"
        )
    return lines


def _currency(currencies: Currencies, code: str) -> Currency:
    try:
        return currencies.get(code)
    except AmountError:
        return Currency(code, 0)  # no longer configured: shown in minor units


def _oldest(now: datetime, since: datetime | None, label: str) -> str:
    if since is None:
        return ""
    return f", {label} since {_minute(since)} ({_duration(_waited(now, since) or 0)})"


def _waited(now: datetime, since: datetime | None) -> int | None:
    return None if since is None else max(int((now - since).total_seconds()), 0)


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _minute(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "never"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in values.items()}
