"""The node's metrics: counters and histograms kept in memory, rendered in Prometheus' text
exposition format (version 0.0.4) at `/metrics` together with figures read from the database
at scrape time.

One `NodeMetrics` per node (several run in one test process; no module-level registry).
Counting is a dictionary update keyed by a tuple of label values; nothing is formatted until a
scrape. Label values come from small fixed sets (route patterns, activity types the node
handles, outcome names), never from a raw path, a host or an actor, so the number of series
stays bounded. Federation reports its events through `NodeMetrics.observe` (see
federation/observe.py for why a callable); the database reports each unit of work's duration
through `Database.timing`; the HTTP middleware in server/api/metrics.py counts requests.
"""

from __future__ import annotations

import math
import os
import resource
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from federation import queues
from federation.observe import DELIVERY, FETCH, INBOX_ACTIVITY, INBOX_ITEM, SIGNATURE_FAILURE
from payments import overview
from server import __version__
from server.storage.engine import Database

Labels = tuple[str, ...]
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DATABASE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Counter:
    """A monotonically increasing count per combination of label values."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Labels = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = label_names
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1) -> None:
        """Add `amount` (default 1) to the series named by `labels` (values, in order)."""
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def samples(self) -> Iterator[tuple[str, Labels, Labels, float]]:
        for labels, value in sorted(self.values.items()):
            yield self.name, self.label_names, labels, value


class Histogram:
    """Observations counted into fixed buckets (upper bounds, in seconds), with their sum."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, label_names: Labels = (), buckets: Iterable[float] = ()
    ) -> None:
        self.name = name
        self.help = help_text
        self.label_names = label_names
        self.buckets = tuple(sorted(buckets))
        # Per series: the count in each bucket (not cumulative; the last is +Inf), then the sum.
        self.series: dict[Labels, list[float]] = {}

    def observe(self, value: float, labels: Labels = ()) -> None:
        """Count one observation of `value` in the series named by `labels`."""
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0] * (len(self.buckets) + 2)
        series[bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def samples(self) -> Iterator[tuple[str, Labels, Labels, float]]:
        names = (*self.label_names, "le")
        bounds = [_number(bound) for bound in self.buckets] + ["+Inf"]
        for labels, series in sorted(self.series.items()):
            cumulative = 0.0
            for bound, count in zip(bounds, series[:-1], strict=True):
                cumulative += count
                yield f"{self.name}_bucket", names, (*labels, bound), cumulative
            yield f"{self.name}_sum", self.label_names, labels, series[-1]
            yield f"{self.name}_count", self.label_names, labels, cumulative


@dataclass
class Gauge:
    """A value read at scrape time (queue depths, totals from the database)."""

    name: str
    help: str
    label_names: Labels = ()
    values: dict[Labels, float] = field(default_factory=dict)
    kind: str = "gauge"  # or "counter", for a total the process keeps (its CPU time)

    def set(self, value: float, labels: Labels = ()) -> Gauge:
        self.values[labels] = value
        return self

    def samples(self) -> Iterator[tuple[str, Labels, Labels, float]]:
        for labels, value in sorted(self.values.items()):
            yield self.name, self.label_names, labels, value


Family = Counter | Histogram | Gauge


class NodeMetrics:
    """Everything one node counts as it runs."""

    def __init__(self) -> None:
        self.http_requests = Counter(
            "kith_http_requests_total",
            "HTTP requests answered, by method, route pattern and status class.",
            ("method", "route", "status"),
        )
        self.http_duration = Histogram(
            "kith_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route pattern.",
            ("method", "route"),
            HTTP_BUCKETS,
        )
        self.inbox_activities = Counter(
            "kith_inbox_activities_total",
            "Activities POSTed to an inbox, by type, outcome and reason.",
            ("type", "outcome", "reason"),
        )
        self.signature_failures = Counter(
            "kith_inbox_signature_failures_total",
            "Inbox requests refused for their HTTP signature, by reason.",
            ("reason",),
        )
        self.inbox_items = Counter(
            "kith_inbox_items_total",
            "Inbox items the worker applied, by type and outcome (retry: failed, tried again).",
            ("type", "outcome"),
        )
        self.deliveries = Counter(
            "kith_deliveries_total",
            "Delivery attempts by outcome (skipped: the host is unavailable or refused).",
            ("outcome",),
        )
        self.fetches = Counter(
            "kith_remote_fetches_total",
            "Remote GETs (actors, keys, objects) by outcome.",
            ("outcome",),
        )
        self.database_time = Histogram(
            "kith_database_unit_of_work_seconds",
            "Duration of database units of work (write: a transaction, waits included).",
            ("kind",),
            DATABASE_BUCKETS,
        )
        self._events = {
            INBOX_ACTIVITY: self.inbox_activities,
            SIGNATURE_FAILURE: self.signature_failures,
            INBOX_ITEM: self.inbox_items,
            DELIVERY: self.deliveries,
            FETCH: self.fetches,
        }
        self.started_at = time.time()

    def observe(self, event: str, labels: Labels) -> None:
        """Count one federation event (federation.observe)."""
        self._events[event].inc(labels)

    def unit_of_work(self, kind: str, seconds: float) -> None:
        """Record one database unit of work (Database.timing)."""
        self.database_time.observe(seconds, (kind,))

    def families(self) -> list[Family]:
        return [
            self.http_requests,
            self.http_duration,
            self.inbox_activities,
            self.signature_failures,
            self.inbox_items,
            self.deliveries,
            self.fetches,
            self.database_time,
        ]


async def database_gauges(db: Database, now: datetime, in_doubt_after: timedelta) -> list[Gauge]:
    """Queue depths, failing hosts and payments, read now in one unit of work."""
    async with db.read() as conn:
        depths = await queues.queue_depths(conn, now)
        settled = await overview.settlement_counts(conn)
        in_doubt = await overview.in_doubt_count(conn, now - in_doubt_after)
        requested = await overview.request_counts(conn)
        totals = await overview.ledger_totals(conn)
    return [
        *_queue_gauges(depths, now),
        _labelled(
            Gauge(
                "kith_payment_settlements",
                "Payments this node takes part in, by role (payer, payee, local) and state.",
                ("role", "state"),
            ),
            settled,
        ),
        Gauge(
            "kith_payments_in_doubt",
            "Payments from local users unanswered for payments.in_doubt_hours.",
        ).set(in_doubt),
        _labelled(
            Gauge("kith_payment_requests", "Payment requests by state.", ("state",)),
            {(state,): count for state, count in requested.items()},
        ),
        *_ledger_gauges(totals),
    ]


def _queue_gauges(depths: queues.QueueDepths, now: datetime) -> list[Gauge]:
    def age(since: datetime | None) -> float:
        return max((now - since).total_seconds(), 0.0) if since is not None else 0.0

    return [
        Gauge("kith_inbox_queue_depth", "Inbox items by state (queued or failed).", ("state",))
        .set(depths.inbox_queued, ("queued",))
        .set(depths.inbox_failed, ("failed",)),
        Gauge(
            "kith_inbox_oldest_due_seconds",
            "How long the longest-waiting queued inbox item is due.",
        ).set(age(depths.inbox_oldest_due_at)),
        Gauge(
            "kith_delivery_queue_depth",
            "Queued deliveries: due now, or waiting for a retry.",
            ("when",),
        )
        .set(depths.deliveries_due, ("due",))
        .set(depths.deliveries_queued - depths.deliveries_due, ("later",)),
        Gauge(
            "kith_delivery_oldest_due_seconds", "How long the longest-waiting due delivery is due."
        ).set(age(depths.deliveries_oldest_due_at)),
        Gauge(
            "kith_federation_hosts",
            "Remote hosts failing (some failure since their last success) or unavailable.",
            ("health",),
        )
        .set(depths.hosts_failing, ("failing",))
        .set(depths.hosts_unavailable, ("unavailable",)),
    ]


def _ledger_gauges(totals: list[overview.LedgerTotal]) -> list[Gauge]:
    balance = Gauge(
        "kith_ledger_balance_minor_units",
        "Ledger balances (credits minus debits posted) summed per currency and kind of owner: "
        "wallets, peers, external, other; in the currency's smallest unit. Each currency sums "
        "to zero.",
        ("currency", "kind"),
    )
    reserved = Gauge(
        "kith_ledger_pending_minor_units",
        "Pending amounts per currency and kind of owner: debit (reserved) or credit (held).",
        ("currency", "kind", "side"),
    )
    for total in totals:
        balance.set(total.balance, (total.currency, total.kind))
        reserved.set(total.debits_pending, (total.currency, total.kind, "debit"))
        reserved.set(total.credits_pending, (total.currency, total.kind, "credit"))
    return [balance, reserved]


def process_gauges(metrics: NodeMetrics) -> list[Gauge]:
    """The process as Prometheus' own clients describe one, and this node's version."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    gauges = [
        Gauge("kith_build_info", "The running Kith release.", ("version",)).set(1, (__version__,)),
        Gauge("process_start_time_seconds", "When the node started (Unix time).").set(
            metrics.started_at
        ),
        Gauge("process_cpu_seconds_total", "CPU time used by the process.", kind="counter").set(
            usage.ru_utime + usage.ru_stime
        ),
    ]
    rss = _resident_bytes()
    if rss is not None:
        gauges.append(Gauge("process_resident_memory_bytes", "Resident memory.").set(rss))
    return gauges


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _labelled(gauge: Gauge, values: dict[tuple[str, ...], int]) -> Gauge:
    for labels, value in values.items():
        gauge.set(value, labels)
    return gauge


def render(families: Iterable[Family]) -> str:
    """The text exposition format: HELP and TYPE, then one `name{labels} value` line each."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for name, label_names, labels, value in family.samples():
            if label_names:
                pairs = ",".join(
                    f'{key}="{_escape_label(str(val))}"'
                    for key, val in zip(label_names, labels, strict=True)
                )
                lines.append(f"{name}{{{pairs}}} {_number(value)}")
            else:
                lines.append(f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) else repr(value)


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
