"""API rate limits: per token and per address, announced in X-RateLimit-* headers."""

from __future__ import annotations

from tests.api.client import ApiClient, client_for
from tests.harness import NodeFactory


async def test_answers_carry_rate_limit_headers_and_429_past_the_limit(
    nodes: NodeFactory,
) -> None:
    node = await nodes.start(api__requests_per_window=3, api__anonymous_requests_per_window=2)
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    remaining = []
    for _ in range(3):
        answer = await alice.get("/api/v1/timelines/home")
        assert answer.status == 200
        assert answer.headers["X-RateLimit-Limit"] == "3"
        remaining.append(answer.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    refused = await alice.get("/api/v1/timelines/home")
    assert refused.status == 429
    assert refused.body == {"error": "Too many requests"}
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["X-RateLimit-Reset"].endswith("Z")
    assert (await bob.get("/api/v1/timelines/home")).status == 200  # another token
    anonymous = ApiClient(node, None)
    assert (await anonymous.get("/api/v1/instance")).status == 200
    assert (await anonymous.get("/api/v1/instance")).status == 200
    assert (await anonymous.get("/api/v1/instance")).status == 429
    node.clock.advance(minutes=5)
    assert (await alice.get("/api/v1/timelines/home")).status == 200


async def test_errors_count_and_carry_the_headers_too(nodes: NodeFactory) -> None:
    node = await nodes.start(api__requests_per_window=5)
    alice = await client_for(node, "alice")
    missing = await alice.get("/api/v1/statuses/1")
    assert missing.status == 404
    assert missing.headers["X-RateLimit-Remaining"] == "4"
    assert "X-RateLimit-Limit" not in (await alice.get("/.well-known/nodeinfo")).headers


async def test_posting_has_its_own_smaller_limit_outbox_included(nodes: NodeFactory) -> None:
    node = await nodes.start(api__posts_per_window=2)
    alice = await client_for(node, "alice")
    first = await alice.post("/api/v1/statuses", status="one")
    assert first.status == 200
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == (
        "2",
        "1",
    )
    second = await alice.request(
        "POST",
        "/users/alice/outbox",
        json={"type": "Note", "content": "two"},
        headers={"Content-Type": "application/activity+json"},
    )
    assert second.status == 201
    assert second.headers["X-RateLimit-Remaining"] == "0"
    third = await alice.post("/api/v1/statuses", status="three")
    assert third.status == 429
    assert int(third.headers["Retry-After"]) > 300  # the posting window is three hours
    reading = await alice.get("/api/v1/timelines/home")
    assert reading.status == 200  # reading is limited apart
    assert reading.headers["X-RateLimit-Limit"] == "300"
    inbox = await alice.get("/users/alice/inbox")
    assert inbox.status == 200
    assert "X-RateLimit-Remaining" in inbox.headers  # C2S calls with a token count too


async def test_made_up_tokens_count_against_the_address(nodes: NodeFactory) -> None:
    node = await nodes.start(api__anonymous_requests_per_window=3)
    alice = await client_for(node, "alice")
    assert (await alice.get("/api/v1/timelines/home")).status == 200
    for attempt in range(3):
        forged = ApiClient(node, f"made-up-{attempt}")
        assert (await forged.get("/api/v1/timelines/home")).status == 401
    refused = await ApiClient(node, "made-up-again").get("/api/v1/timelines/home")
    assert refused.status == 429
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert (await alice.get("/api/v1/timelines/home")).status == 200  # a token in use goes on


async def test_addresses_behind_a_trusted_proxy_are_counted_apart(nodes: NodeFactory) -> None:
    node = await nodes.start(api__anonymous_requests_per_window=1)
    anonymous = ApiClient(node, None)

    async def status_from(address: str) -> int:
        forwarded = {"X-Forwarded-For": f"{address}, 127.0.0.1"}
        return (await anonymous.request("GET", "/api/v1/instance", headers=forwarded)).status

    assert await status_from("203.0.113.1") == 200
    assert await status_from("203.0.113.1") == 429
    assert await status_from("203.0.113.2") == 200
    direct = await nodes.start(api__anonymous_requests_per_window=1, api__trusted_proxies=[])
    anonymous = ApiClient(direct, None)
    assert await status_from("203.0.113.1") == 200
    assert await status_from("203.0.113.2") == 429  # no trusted proxy: the header is ignored
