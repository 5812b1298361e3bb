"""Malformed requests get a 4xx with a JSON reason, never a 500 (table plus property tests)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.harness import Node, NodeFactory
from tests.integration.support import AS2, raw_request

WF = "/.well-known/webfinger?resource="


@dataclass(frozen=True)
class Bad:
    """One malformed request and the status it must get."""

    target: str  # the request target, sent byte for byte; {domain} is replaced
    status: int | tuple[int, ...]  # the right answer, or the several that are right
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)


BAD_REQUESTS: dict[str, Bad] = {
    # WebFinger resources
    "wf_no_resource": Bad("/.well-known/webfinger", 400),
    "wf_empty_resource": Bad(WF, 400),
    "wf_resource_twice_empty": Bad(WF + "&resource=", 400),
    "wf_very_long_resource": Bad(WF + "acct:" + "a" * 5000 + "@{domain}", 400),
    "wf_very_long_host": Bad(WF + "acct:alice@" + "h" * 2000, 400),
    "wf_percent_garbage": Bad(WF + "%ZZ%", 400),
    "wf_only_at_signs": Bad(WF + "@@@", 400),
    "wf_nul_in_host": Bad(WF + "acct:alice@{domain}%00", 400),
    "wf_nul_in_username": Bad(WF + "acct:al%00ice@{domain}", (400, 404)),
    "wf_newline_in_acct": Bad(WF + "acct:alice%0A@{domain}", 400),
    "wf_rtl_override_username": Bad(WF + "acct:%E2%80%AEecila@{domain}", 404),
    "wf_emoji_username": Bad(WF + "acct:%F0%9F%98%80@{domain}", 404),
    "wf_emoji_host": Bad(WF + "acct:alice@%F0%9F%98%80.example", 404),
    "wf_invalid_utf8": Bad(WF + "acct:%FF%FE@{domain}", 404),
    "wf_lone_surrogate_utf8": Bad(WF + "acct:%ED%A0%80@{domain}", 404),
    "wf_url_with_userinfo": Bad(WF + "http://alice@evil.example/users/alice", 404),
    "wf_javascript_url": Bad(WF + "javascript:alert(1)", 400),
    "wf_bad_ipv6": Bad(WF + "http://[zz]/users/alice", 400),
    "wf_host_with_backslash": Bad(WF + "acct:alice@evil.example%5C{domain}", 400),
    "wf_username_too_long": Bad(WF + "acct:" + "a" * 200 + "@{domain}", 404),
    # unknown paths
    "unknown_path": Bad("/no/such/thing", 404),
    "unknown_well_known": Bad("/.well-known/nope", 404),
    "unknown_actor_subpath": Bad("/users/alice/nope", 404, headers=AS2),
    "unknown_api": Bad("/api/v1/nope", 404),
    "nul_in_actor_name": Bad("/users/al%00ice", (400, 404), headers=AS2),
    "invalid_utf8_actor_name": Bad("/users/%FF", 404, headers=AS2),
    "very_long_actor_name": Bad("/users/" + "a" * 3000, 404, headers=AS2),
    "instance_key_outbox": Bad("/users/instance.actor/outbox", 404, headers=AS2),
    # wrong methods
    "post_webfinger": Bad("/.well-known/webfinger", 405, method="POST"),
    "delete_actor": Bad("/users/alice", 405, method="DELETE"),
    "put_nodeinfo": Bad("/nodeinfo/2.0", 405, method="PUT"),
    "post_healthz": Bad("/healthz", 405, method="POST"),
    "patch_verify_credentials": Bad("/api/v1/accounts/verify_credentials", 405, method="PATCH"),
    "post_outbox_without_token": Bad("/users/alice/outbox", 401, method="POST"),
    # wrong Accept headers
    "actor_accepts_png": Bad("/users/alice", 406, headers={"Accept": "image/png"}),
    "actor_accepts_text": Bad("/users/alice", 406, headers={"Accept": "text/plain"}),
    "actor_refuses_as2": Bad("/users/alice", 406, headers={"Accept": "application/*;q=0"}),
    "actor_garbage_accept": Bad("/users/alice", 406, headers={"Accept": "garbage"}),
    "actor_bad_q": Bad("/users/alice", 406, headers={"Accept": "application/json;q=abc"}),
    "instance_actor_png": Bad("/actor", 406, headers={"Accept": "image/png"}),
    "collection_wants_html": Bad("/users/alice/outbox", 406, headers={"Accept": "text/html"}),
    "profile_wants_png": Bad("/@alice", 406, headers={"Accept": "image/png"}),
    # weird query strings
    "nodeinfo_unknown_version_query": Bad("/nodeinfo/9.9?x=%00", 404),
    "wf_query_semicolons": Bad("/.well-known/webfinger?;;;&&&==", 400),
    "wf_query_only_ampersands": Bad("/.well-known/webfinger?&&&", 400),
    "unknown_user_with_query": Bad("/users/nobody?page=%FF", 404, headers=AS2),
    # path traversal on /static
    "static_dotdot": Bad("/static/../app.py", 404),
    "static_encoded_dotdot": Bad("/static/%2e%2e/app.py", 404),
    "static_encoded_slash": Bad("/static/..%2fapp.py", 404),
    "static_double_dotdot": Bad("/static/%2e%2e/%2e%2e/pyproject.toml", 404),
    "static_backslash": Bad("/static/..%5capp.py", 404),
    "static_absolute": Bad("/static//etc/passwd", 404),
    "static_nul": Bad("/static/kith.css%00.png", 404),
    "static_missing_file": Bad("/static/nope.css", 404),
    "static_dir_listing": Bad("/static/", 404),
    # huge headers within aiohttp's limits
    "huge_accept_on_actor": Bad("/users/alice", 406, headers={"Accept": "x/y, " * 1500}),
    "huge_authorization": Bad(
        "/api/v1/accounts/verify_credentials",
        401,
        headers={"Authorization": "Bearer " + "a" * 8000},
    ),
    "huge_custom_header": Bad("/nope", 404, headers={"X-Filler": "f" * 8000}),
    "many_headers": Bad("/nope", 404, headers={f"X-H{i}": "v" for i in range(90)}),
}


@pytest.fixture
async def alice_node(node: Node) -> Node:
    await node.create_user("alice")
    return node


async def test_malformed_profile_name_gets_a_4xx_page_for_a_browser(alice_node: Node) -> None:
    """The web client's pages answer people with pages, errors included (not JSON)."""
    headers = {"Accept": "text/html"}
    status, answer, body = await raw_request(alice_node, "/@al%00ice", "GET", headers)
    assert status in (400, 404), body[:300]
    assert answer["content-type"].startswith("text/html"), answer
    assert "content-security-policy" in answer


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
async def test_malformed_request_gets_its_4xx_with_json_error(alice_node: Node, case: str) -> None:
    bad = BAD_REQUESTS[case]
    target = bad.target.replace("{domain}", alice_node.domain)
    status, headers, body = await raw_request(alice_node, target, bad.method, bad.headers)
    allowed = bad.status if isinstance(bad.status, tuple) else (bad.status,)
    assert status in allowed, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    payload = json.loads(body)
    assert isinstance(payload["error"], str)
    assert payload["error"]
    assert b"Traceback" not in body
    assert b"[tool." not in body
    assert b"import" not in body


async def test_wrong_method_names_the_allowed_ones(alice_node: Node) -> None:
    status, headers, _ = await raw_request(alice_node, "/.well-known/webfinger", "POST")
    assert status == 405
    assert "GET" in headers["allow"]


async def test_static_files_are_served_so_traversal_refusals_mean_something(
    alice_node: Node,
) -> None:
    status, headers, body = await raw_request(alice_node, "/static/kith.css")
    assert status == 200
    assert headers["content-type"].startswith("text/css")
    assert body


async def test_huge_accept_with_as2_somewhere_still_negotiates(alice_node: Node) -> None:
    accept = "application/activity+json, " + "x/y, " * 1500
    status, headers, _ = await raw_request(alice_node, "/users/alice", headers={"Accept": accept})
    assert status == 200
    assert headers["content-type"] == "application/activity+json"


async def test_header_beyond_server_limit_is_refused_not_crashed(alice_node: Node) -> None:
    status, _, _ = await raw_request(alice_node, "/nope", headers={"X-Filler": "f" * 20000})
    assert 400 <= status < 500


async def test_bogus_request_id_is_replaced(alice_node: Node) -> None:
    headers = {"X-Request-Id": "<script>" + "x" * 100}
    status, response_headers, _ = await raw_request(alice_node, "/healthz", headers=headers)
    assert status == 200
    assert "<" not in response_headers["x-request-id"]


# Property tests: hypothesis drives one node started inside the test body. Its examples run
# in a worker thread that hands each request to the event loop the node lives on.

ACCEPT_PARTS = st.sampled_from(
    [
        "application/activity+json",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        "application/json",
        "text/html",
        "*/*",
        "image/*",
        "text/*",
        "",
        ";",
        "/",
        "*",
        "a/b/c",
    ]
)
Q_VALUES = st.one_of(
    st.just(""),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda q: f";q={q}"),
    st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=8).map(
        lambda q: f";q={q}"
    ),
)
HEADER_TEXT = st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=200)
ACCEPT_HEADERS = st.one_of(
    HEADER_TEXT,
    st.lists(st.tuples(ACCEPT_PARTS, Q_VALUES).map("".join), max_size=6).map(", ".join),
)


def resources_for(node: Node) -> st.SearchStrategy[str]:
    """Arbitrary text, and text in the shapes that reach this node's account lookups."""
    return st.one_of(
        st.text(max_size=300),
        st.builds(lambda user, host: f"acct:{user}@{host}", st.text(max_size=40), st.text()),
        st.builds(lambda user: f"acct:{user}@{node.domain}", st.text(max_size=40)),
        st.builds(lambda user: f"{user}@{node.domain}", st.text(max_size=40)),
        st.builds(lambda name: node.url(f"/users/{name}"), st.text(max_size=40)),
        st.builds(lambda name: node.url(f"/@{name}"), st.text(max_size=40)),
    )


async def _status(node: Node, path: str, **options: object) -> tuple[int, bytes]:
    async with node.http.get(path, **options) as response:
        return response.status, await response.read()


async def test_webfinger_never_fails_on_arbitrary_resources(nodes: NodeFactory) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    loop = asyncio.get_running_loop()

    @settings(max_examples=60, deadline=None, database=None)
    @given(resource=resources_for(node))
    @example(resource=f"acct:al\x00ice@{node.domain}")
    @example(resource=node.url("/users/\x00"))
    def check(resource: str) -> None:
        request = _status(node, "/.well-known/webfinger", params={"resource": resource})
        status, body = asyncio.run_coroutine_threadsafe(request, loop).result(timeout=30)
        assert status < 500, (resource, body)
        assert status in (200, 400, 404), (resource, status)

    await asyncio.to_thread(check)


async def test_actor_never_fails_on_arbitrary_accept_headers(nodes: NodeFactory) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    loop = asyncio.get_running_loop()

    @settings(max_examples=60, deadline=None, database=None)
    @given(accept=ACCEPT_HEADERS, path=st.sampled_from(["/users/alice", "/actor", "/@alice"]))
    def check(accept: str, path: str) -> None:
        request = _status(node, path, headers={"Accept": accept}, allow_redirects=False)
        status, body = asyncio.run_coroutine_threadsafe(request, loop).result(timeout=30)
        assert status < 500, (accept, body)
        assert status in (200, 302, 406), (accept, status)

    await asyncio.to_thread(check)


async def test_pages_link_static_files_by_version_and_only_those_are_cached_for_long(
    alice_node: Node,
) -> None:
    status, _, page = await raw_request(alice_node, "/auth/password/new")
    assert status == 200
    links = re.findall(rb'(?:href|src)="(/static/kith\.(?:css|js)\?v=[0-9a-f]+)"', page)
    assert len(links) == 2
    for link in links:
        status, headers, body = await raw_request(alice_node, link.decode())
        assert status == 200
        assert body
        assert "immutable" in headers["cache-control"]
        again, _, _ = await raw_request(
            alice_node, link.decode(), headers={"If-None-Match": headers["etag"]}
        )
        assert again == 304
    status, headers, _ = await raw_request(alice_node, "/static/kith.js?v=stale")
    assert status == 200
    assert headers["cache-control"] == "public, max-age=300"
