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
