"""WebFinger (RFC 7033) as Mastodon uses it: lookups, errors, CORS and the actor round trip."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.harness import Node
from tests.integration.support import AS2, AS2_MEDIA_TYPE, mark_deleted

WEBFINGER = "/.well-known/webfinger"
PROFILE_PAGE = "http://webfinger.net/rel/profile-page"


async def webfinger(node: Node, resource: str | None, **params: object) -> tuple[int, dict, dict]:
    query: dict[str, object] = dict(params)
    if resource is not None:
        query["resource"] = resource
    async with node.http.get(WEBFINGER, params=query) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


def links_with_rel(jrd: dict, rel: str) -> list[dict]:
    return [link for link in jrd["links"] if link.get("rel") == rel]


@pytest.fixture
async def alice_node(node: Node) -> Node:
    await node.create_user("alice")
    return node


async def test_webfinger_for_user_is_jrd_with_self_link_to_actor(alice_node: Node) -> None:
    node = alice_node
    async with node.http.get(WEBFINGER, params={"resource": f"acct:alice@{node.domain}"}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/jrd+json"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        jrd = await r.json(content_type=None)
    assert jrd["subject"] == f"acct:alice@{node.domain}"
    self_links = links_with_rel(jrd, "self")
    assert len(self_links) == 1
    assert self_links[0]["type"] == AS2_MEDIA_TYPE
    assert self_links[0]["href"] == node.url("/users/alice")


async def test_webfinger_self_href_is_the_id_of_the_served_actor(alice_node: Node) -> None:
    node = alice_node
    _, _, jrd = await webfinger(node, f"acct:alice@{node.domain}")
    href = links_with_rel(jrd, "self")[0]["href"]
    async with node.http.get(href, headers=AS2) as response:
        assert response.status == 200
        actor = await response.json(content_type=None)
    assert actor["id"] == href


async def test_webfinger_has_profile_page_link_and_aliases(alice_node: Node) -> None:
    node = alice_node
    _, _, jrd = await webfinger(node, f"acct:alice@{node.domain}")
    profile_links = links_with_rel(jrd, PROFILE_PAGE)
    assert profile_links == [
        {"rel": PROFILE_PAGE, "type": "text/html", "href": node.url("/@alice")}
    ]
    assert set(jrd["aliases"]) == {node.url("/@alice"), node.url("/users/alice")}
    async with node.http.get(profile_links[0]["href"], headers={"Accept": "text/html"}) as r:
        assert r.status == 200
        assert r.content_type == "text/html"


RESOURCE_FORMS: dict[str, Callable[[Node], str]] = {
    "acct": lambda n: f"acct:alice@{n.domain}",
    "bare_user_at_host": lambda n: f"alice@{n.domain}",
    "leading_at_sign": lambda n: f"@alice@{n.domain}",
    "upper_case_username": lambda n: f"acct:ALICE@{n.domain}",
    "mixed_case_scheme": lambda n: f"ACCT:Alice@{n.domain}",
    "actor_url": lambda n: n.url("/users/alice"),
    "actor_url_trailing_slash": lambda n: n.url("/users/alice/"),
    "profile_url": lambda n: n.url("/@alice"),
}


@pytest.mark.parametrize("form", sorted(RESOURCE_FORMS))
async def test_webfinger_resolves_every_resource_form_to_the_canonical_subject(
    alice_node: Node, form: str
) -> None:
    node = alice_node
    status, _, jrd = await webfinger(node, RESOURCE_FORMS[form](node))
    assert status == 200
    assert jrd["subject"] == f"acct:alice@{node.domain}"
    assert [link["href"] for link in links_with_rel(jrd, "self")] == [node.url("/users/alice")]


@pytest.mark.parametrize("form", ["acct", "url"])
async def test_webfinger_finds_instance_actor(node: Node, form: str) -> None:
    resource = f"acct:{node.domain}@{node.domain}" if form == "acct" else node.url("/actor")
    status, headers, jrd = await webfinger(node, resource)
    assert status == 200
    assert headers["Content-Type"] == "application/jrd+json"
    assert jrd["subject"] == f"acct:{node.domain}@{node.domain}"
    self_links = links_with_rel(jrd, "self")
    assert len(self_links) == 1
    assert self_links[0]["href"] == node.url("/actor")
    assert self_links[0]["type"] == AS2_MEDIA_TYPE


async def test_webfinger_rel_self_returns_only_the_self_link(alice_node: Node) -> None:
    node = alice_node
    status, _, jrd = await webfinger(node, f"acct:alice@{node.domain}", rel="self")
    assert status == 200
    assert [link["rel"] for link in jrd["links"]] == ["self"]
    assert jrd["subject"] == f"acct:alice@{node.domain}"


async def test_webfinger_rel_profile_page_returns_only_that_link(alice_node: Node) -> None:
    node = alice_node
    status, _, jrd = await webfinger(node, f"acct:alice@{node.domain}", rel=PROFILE_PAGE)
    assert status == 200
    assert [link["rel"] for link in jrd["links"]] == [PROFILE_PAGE]


async def test_webfinger_several_rel_parameters_return_each_link(alice_node: Node) -> None:
    node = alice_node
    query = f"resource=acct:alice@{node.domain}&rel=self&rel={PROFILE_PAGE}"
    async with node.http.get(f"{WEBFINGER}?{query}") as response:
        assert response.status == 200
        jrd = await response.json(content_type=None)
    assert sorted(link["rel"] for link in jrd["links"]) == sorted(["self", PROFILE_PAGE])


async def test_webfinger_unknown_rel_returns_no_links_but_the_subject(alice_node: Node) -> None:
    node = alice_node
    status, _, jrd = await webfinger(node, f"acct:alice@{node.domain}", rel="http://x.example/rel")
    assert status == 200
    assert jrd["links"] == []
    assert jrd["subject"] == f"acct:alice@{node.domain}"


MALFORMED_RESOURCES = {
    "empty": "",
    "whitespace": "   ",
    "acct_without_host": "acct:alice",
    "acct_without_user": "acct:@example.com",
    "acct_scheme_only": "acct:",
    "trailing_at": "alice@",
    "space_in_acct": "acct:al ice@example.com",
    "slash_in_acct": "acct:alice/x@example.com",
    "url_without_host": "https://",
    "unclosed_ipv6_url": "http://[::1/users/alice",
    "port_out_of_range": "https://127.0.0.1:99999/users/alice",
    "non_numeric_port": "acct:alice@example.com:http",
    "too_long": "acct:" + "a" * 1100 + "@example.com",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_RESOURCES))
async def test_webfinger_malformed_resource_is_400_json(node: Node, case: str) -> None:
    async with node.http.get(WEBFINGER, params={"resource": MALFORMED_RESOURCES[case]}) as r:
        assert r.status == 400
        assert r.content_type == "application/json"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        body = await r.json()
    assert isinstance(body["error"], str)
    assert body["error"]


async def test_webfinger_missing_resource_is_400_json(node: Node) -> None:
    async with node.http.get(WEBFINGER) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"]


async def test_webfinger_for_unknown_user_is_404_json(alice_node: Node) -> None:
    node = alice_node
    status, headers, body = await webfinger(node, f"acct:bob@{node.domain}")
    assert status == 404
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert body["error"]


@pytest.mark.parametrize(
    "resource",
    [
        "acct:alice@example.com",
        "alice@other.example",
        "https://example.com/users/alice",
        "acct:alice@127.0.0.1:1",
    ],
)
async def test_webfinger_for_another_host_is_404(alice_node: Node, resource: str) -> None:
    status, _, body = await webfinger(alice_node, resource)
    assert status == 404
    assert body["error"]


@pytest.mark.parametrize("path", ["/about", "/users/alice/outbox", "/nodeinfo/2.0", "/"])
async def test_webfinger_for_local_url_that_is_not_an_account_is_404(
    alice_node: Node, path: str
) -> None:
    status, _, body = await webfinger(alice_node, alice_node.url(path))
    assert status == 404
    assert body["error"]


async def test_webfinger_for_deleted_account_is_410(alice_node: Node) -> None:
    node = alice_node
    await mark_deleted(node, "alice")
    for resource in (f"acct:alice@{node.domain}", node.url("/users/alice")):
        status, headers, body = await webfinger(node, resource)
        assert status == 410
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert body["error"]


async def test_webfinger_for_instance_actor_row_key_is_404(node: Node) -> None:
    """The instance actor's internal row name is no handle; only acct:DOMAIN@DOMAIN is."""
    for resource in (f"acct:instance.actor@{node.domain}", node.url("/users/instance.actor")):
        status, _, body = await webfinger(node, resource)
        assert status == 404, resource
        assert body["error"]


async def test_webfinger_cors_preflight_is_204_with_cors_headers(node: Node) -> None:
    headers = {
        "Origin": "https://client.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Accept",
    }
    async with node.http.options(WEBFINGER, headers=headers) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
        assert "GET" in methods
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert "accept" in allowed


async def test_webfinger_is_cacheable_by_peers(alice_node: Node) -> None:
    _, headers, _ = await webfinger(alice_node, f"acct:alice@{alice_node.domain}")
    assert "max-age" in headers["Cache-Control"]


async def mastodon_round_trip(node: Node, actor_url: str) -> None:
    """What Mastodon does: fetch, WebFinger preferredUsername@host-of-id, compare self href."""
    async with node.http.get(actor_url, headers=AS2) as response:
        assert response.status == 200
        actor = await response.json(content_type=None)
    host = urlsplit(actor["id"]).netloc
    handle = f"{actor['preferredUsername']}@{host}"
    status, _, jrd = await webfinger(node, f"acct:{handle}")
    assert status == 200
    assert jrd["subject"] == f"acct:{handle}"
    self_links = links_with_rel(jrd, "self")
    assert len(self_links) == 1
    assert self_links[0]["href"] == actor["id"]
    # FEP-2c59: the actor states the same handle.
    assert actor["webfinger"] == handle


async def test_webfinger_round_trip_from_user_actor_matches_its_id(alice_node: Node) -> None:
    await mastodon_round_trip(alice_node, "/users/alice")


async def test_webfinger_round_trip_from_instance_actor_matches_its_id(node: Node) -> None:
    await mastodon_round_trip(node, "/actor")


async def test_webfinger_round_trip_for_bot_account(node: Node) -> None:
    await node.create_user("newsbot", is_bot=True)
    await mastodon_round_trip(node, "/users/newsbot")
