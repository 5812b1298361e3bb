"""`GET /metrics` on a real node over HTTP: the text parses, requests count under their route
pattern, inbox refusals and signature failures, queue depths and payments show, and only
allowed clients (with the token, when one is set) may read it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import insert

from federation.tables import deliveries, inbox_items
from payments.money import Currencies
from protocol.httpsig import HttpRequest, sign_cavage
from server.wallets import deposit
from tests.harness import Node, NodeFactory, eventually
from tests.integration.support import AS2

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """The text exposition format, strictly: every line a comment or `name{labels} value`,
    every sample's family declared by a TYPE line first."""
    typed: set[str] = set()
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split(" ")[2:4]
            assert kind in ("counter", "gauge", "histogram"), line
            typed.add(name)
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, f"not a sample line: {line!r}"
        name, labels_text, value = match.groups()
        labels = _parse_labels(labels_text or "")
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"no TYPE for {name}"
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"repeated sample {line!r}"
        samples[key] = float(value)
    return samples


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match, f"bad labels {text!r}"
        labels[match.group(1)] = match.group(2)
        position = match.end()
    return labels


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(node: Node, headers: dict[str, str] | None = None) -> Samples:
    async with node.http.get("/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(await response.text())


async def test_metrics_parse_and_count_requests_under_their_route_pattern(node: Node) -> None:
    await node.create_user("alice")
    async with node.http.get("/users/alice", headers=AS2) as response:
        assert response.status == 200
    async with node.http.get("/users/nobody", headers=AS2) as response:
        assert response.status == 404
    async with node.http.get("/no/such/page") as response:
        assert response.status == 404
    samples = await scrape(node)
    route = {"method": "GET", "route": "/users/{username}"}
    assert value(samples, "kith_http_requests_total", **route, status="2xx") == 1
    assert value(samples, "kith_http_requests_total", **route, status="4xx") == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "4xx"}
    assert value(samples, "kith_http_requests_total", **unmatched) == 1
    assert value(samples, "kith_http_request_duration_seconds_count", **route) == 2
    assert value(samples, "kith_http_request_duration_seconds_bucket", **route, le="+Inf") == 2
    assert not any("alice" in v or "/no/such" in v for _, labels in samples for _, v in labels)
    assert value(samples, "kith_database_up") == 1
    assert value(samples, "kith_database_unit_of_work_seconds_count", kind="read") > 0
    assert value(samples, "process_resident_memory_bytes") > 0


async def test_inbox_posts_refused_for_their_signature_are_counted(node: Node) -> None:
    await node.create_user("alice")
    activity = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": node.url("/users/alice/statuses/1/activity"),
        "type": "Create",
        "actor": node.url("/users/alice"),
        "object": {
            "id": node.url("/users/alice/statuses/1"),
            "type": "Note",
            "attributedTo": node.url("/users/alice"),
            "content": "forged",
        },
    }
    body = json.dumps(activity).encode()
    headers = {"Content-Type": "application/activity+json"}
    async with node.http.post("/inbox", data=body, headers=headers) as response:
        assert response.status == 401  # not signed at all
    wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    request = HttpRequest("POST", node.url("/inbox"), {**headers, "Host": node.domain}, body)
    signed = sign_cavage(request, node.url("/users/alice#main-key"), wrong_key, node.clock())
    async with node.http.post("/inbox", data=body, headers={**headers, **signed}) as response:
        assert response.status == 401  # signed with a key that is not alice's
    samples = await scrape(node)
    failures = "kith_inbox_signature_failures_total"
    assert value(samples, failures, reason="malformed") == 1
    assert value(samples, failures, reason="mismatch") == 1
    received = "kith_inbox_activities_total"
    refused = {"outcome": "refused", "reason": "signature"}
    assert value(samples, received, type="unknown", **refused) == 1
    assert value(samples, received, type="Create", **refused) == 1
    assert value(samples, "kith_remote_fetches_total", outcome="ok") >= 1  # alice's key
    inbox = {"method": "POST", "route": "/inbox", "status": "4xx"}
    assert value(samples, "kith_http_requests_total", **inbox) == 2


async def test_queued_deliveries_show_in_the_queue_depth_and_age(node: Node) -> None:
    now = node.clock()
    rows = [
        # Due 90 s ago and claimed by another process: the worker leaves it alone.
        _delivery(1, now - timedelta(seconds=90), locked_until=now + timedelta(hours=1)),
        _delivery(2, now + timedelta(hours=1)),  # waiting for a retry
    ]
    async with node.db.transaction() as conn:
        await conn.execute(insert(deliveries), rows)
    samples = await scrape(node)
    assert value(samples, "kith_delivery_queue_depth", when="due") == 1
    assert value(samples, "kith_delivery_queue_depth", when="later") == 1
    assert value(samples, "kith_delivery_oldest_due_seconds") == 90
    assert value(samples, "kith_inbox_queue_depth", state="queued") == 0


def _delivery(
    serial: int,
    due: datetime,
    locked_until: datetime | None = None,
    signer: str = "http://127.0.0.1:1/actor",
) -> dict[str, object]:
    return {
        "id": 9_000 + serial,
        "activity_id": f"http://127.0.0.1:1/activities/{serial}",
        "inbox_url": "http://127.0.0.1:1/inbox",
        "host": "127.0.0.1:1",
        "signer_uri": signer,
        "body": "{}",
        "priority": 5,
        "state": "queued",
        "attempts": 1,
        "created_at": due - timedelta(minutes=5),
        "next_attempt_at": due,
        "locked_until": locked_until,
        "wants_answer": False,
    }


async def test_a_payment_shows_in_the_settlement_and_ledger_metrics(node: Node) -> None:
    alice = await node.create_user("alice")
    await node.create_user("bob")
    async with node.db.transaction() as conn:
        await deposit(conn, alice, 20_00, Currencies({}).get("EUR"), node.clock())
    token = await node.create_token("alice")
    async with node.http.post(
        "/api/kith/v1/transfers",
        json={"to": "bob", "amount": "5.00", "currency": "EUR"},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status in (200, 202), await response.text()
    samples = await scrape(node)
    settled = {
        dict(labels)["state"]: count
        for (name, labels), count in samples.items()
        if name == "kith_payment_settlements" and dict(labels)["role"] == "local"
    }
    assert sum(settled.values()) == 1, settled
    balance = "kith_ledger_balance_minor_units"
    assert value(samples, balance, currency="EUR", kind="wallets") == 20_00
    assert value(samples, balance, currency="EUR", kind="external") == -20_00
    assert value(samples, "kith_payments_in_doubt") == 0


async def test_only_allowed_addresses_with_the_token_may_read_the_metrics(
    nodes: NodeFactory,
) -> None:
    elsewhere = await nodes.start(metrics__allowed=["10.0.0.0/8"])
    async with elsewhere.http.get("/metrics") as response:
        assert response.status == 403
        assert "metrics.allowed" in (await response.json())["error_description"]
    guarded = await nodes.start(metrics__token="s3cret-metrics")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-metrics"}):
        async with guarded.http.get("/metrics", headers=headers) as response:
            assert response.status == 403, headers
            assert "metrics.token" in (await response.json())["error_description"]
    assert await scrape(guarded, {"Authorization": "Bearer s3cret-metrics"})
    # Through a reverse proxy on loopback (a trusted proxy), the real client is the one it names.
    proxied = {"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer s3cret-metrics"}
    async with guarded.http.get("/metrics", headers=proxied) as response:
        assert response.status == 403
        assert "203.0.113.9" in (await response.json())["error_description"]
    off = await nodes.start(metrics__enabled=False)
    async with off.http.get("/metrics") as response:
        assert response.status == 404


async def test_delivery_attempts_and_applied_inbox_items_are_counted(node: Node) -> None:
    now = node.clock()
    like = {
        "id": "https://peer.example/likes/1",
        "type": "Like",
        "actor": "https://peer.example/users/bob",
        "object": "https://peer.example/notes/unknown",
    }
    async with node.db.transaction() as conn:
        # Due now, to a port nobody listens on: attempted, then kept for a retry.
        await conn.execute(insert(deliveries), [_delivery(3, now, signer=node.url("/actor"))])
        await conn.execute(
            insert(inbox_items),
            [
                {
                    "id": 7_001,
                    "activity_id": like["id"],
                    "activity_type": "Like",
                    "actor_uri": like["actor"],
                    "signer_key_id": f"{like['actor']}#main-key",
                    "body": json.dumps(like),
                    "state": "queued",
                    "attempts": 0,
                    "received_at": now,
                    "next_attempt_at": now,
                }
            ],
        )

    def counted(samples: Samples) -> bool:
        return value(samples, "kith_deliveries_total", outcome="retry") == 1 and any(
            name == "kith_inbox_items_total" for name, _ in samples
        )

    samples = await eventually(lambda: scrape(node), counted)
    applied = {
        dict(labels)["outcome"]: count
        for (name, labels), count in samples.items()
        if name == "kith_inbox_items_total"
    }
    assert sum(applied.values()) == 1, applied
    assert {
        dict(labels)["type"] for (name, labels) in samples if name == "kith_inbox_items_total"
    } == {"Like"}
