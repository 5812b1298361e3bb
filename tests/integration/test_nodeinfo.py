"""NodeInfo (FEP-f1d5): discovery, schema-valid 2.0 and 2.1 documents, live user counts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from server import __version__
from server.api.auth import TOKEN_USE
from tests.harness import Node, NodeFactory
from tests.integration.support import mark_deleted

SCHEMAS = Path(__file__).resolve().parent.parent / "fixtures" / "nodeinfo"
SCHEMA_REL = "http://nodeinfo.diaspora.software/ns/schema/{}"
VERSIONS = ("2.0", "2.1")


def validator(version: str) -> jsonschema.Draft4Validator:
    schema = json.loads((SCHEMAS / f"schema-{version}.json").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


async def nodeinfo(node: Node, version: str = "2.0") -> dict:
    async with node.http.get(f"/nodeinfo/{version}") as response:
        assert response.status == 200
        return await response.json(content_type=None)


async def users(node: Node) -> dict:
    return (await nodeinfo(node))["usage"]["users"]


async def use_token(node: Node, token: str) -> None:
    """Use a token, then let the node write down its use (it does so within a second)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with node.http.get("/api/v1/accounts/verify_credentials", headers=headers) as r:
        assert r.status == 200
    await node.app[TOKEN_USE].flush()


async def test_nodeinfo_discovery_links_both_versions_on_this_node(node: Node) -> None:
    async with node.http.get("/.well-known/nodeinfo") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        body = await response.json()
    hrefs = {link["rel"]: link["href"] for link in body["links"]}
    assert hrefs == {SCHEMA_REL.format(v): node.url(f"/nodeinfo/{v}") for v in VERSIONS}


@pytest.mark.parametrize("version", VERSIONS)
async def test_nodeinfo_document_validates_against_its_schema(node: Node, version: str) -> None:
    await node.create_user("alice")
    async with node.http.get("/.well-known/nodeinfo") as response:
        links = (await response.json())["links"]
    href = next(link["href"] for link in links if link["rel"] == SCHEMA_REL.format(version))
    async with node.http.get(href) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == (
            f'application/json; profile="{SCHEMA_REL.format(version)}#"'
        )
        document = await response.json(content_type=None)
    errors = [e.message for e in validator(version).iter_errors(document)]
    assert errors == []
    assert document["version"] == version
    assert document["software"] == {"name": "kith", "version": __version__}
    assert document["protocols"] == ["activitypub"]
    assert isinstance(document["usage"]["localPosts"], int)
    assert isinstance(document["openRegistrations"], bool)


async def test_nodeinfo_schema_rejects_a_document_missing_usage(node: Node) -> None:
    """The schema check above can fail: a document without `usage` is invalid."""
    document = await nodeinfo(node)
    del document["usage"]
    assert not validator("2.0").is_valid(document)


async def test_nodeinfo_fresh_node_counts_no_users_not_even_the_instance_actor(
    node: Node,
) -> None:
    async with node.http.get("/actor", headers={"Accept": "application/activity+json"}) as r:
        assert r.status == 200  # the instance actor exists
    assert await users(node) == {"total": 0, "activeMonth": 0, "activeHalfyear": 0}


async def test_nodeinfo_total_counts_created_users_but_not_deleted_ones(node: Node) -> None:
    for name in ("alice", "bob", "carol"):
        await node.create_user(name)
    assert (await users(node))["total"] == 3
    await mark_deleted(node, "carol")
    assert (await users(node))["total"] == 2


async def test_nodeinfo_counts_this_nodes_users_not_the_remote_accounts_it_knows(
    nodes: NodeFactory,
) -> None:
    here, there = await nodes.start(), await nodes.start()
    await here.create_user("alice")
    await there.create_user("bob")
    known = await here.federation.resolve_account(f"bob@{there.config.domain}")
    assert not known.is_local
    assert (await users(here))["total"] == 1
    assert (await users(there))["total"] == 1


async def test_nodeinfo_active_counts_follow_token_use_and_the_clock(node: Node) -> None:
    await node.create_user("alice")
    await node.create_user("bob")
    token = await node.create_token("alice")
    assert await users(node) == {"total": 2, "activeMonth": 0, "activeHalfyear": 0}

    await use_token(node, token)
    assert await users(node) == {"total": 2, "activeMonth": 1, "activeHalfyear": 1}

    node.clock.advance(days=31)
    assert await users(node) == {"total": 2, "activeMonth": 0, "activeHalfyear": 1}

    node.clock.advance(days=150)
    assert await users(node) == {"total": 2, "activeMonth": 0, "activeHalfyear": 0}

    await use_token(node, token)
    assert await users(node) == {"total": 2, "activeMonth": 1, "activeHalfyear": 1}


async def test_nodeinfo_active_counts_exclude_deleted_accounts(node: Node) -> None:
    await node.create_user("alice")
    await use_token(node, await node.create_token("alice"))
    assert (await users(node))["activeMonth"] == 1
    await mark_deleted(node, "alice")
    assert await users(node) == {"total": 0, "activeMonth": 0, "activeHalfyear": 0}


async def test_nodeinfo_2_1_counts_match_2_0(node: Node) -> None:
    await node.create_user("alice")
    await use_token(node, await node.create_token("alice"))
    assert (await nodeinfo(node, "2.1"))["usage"] == (await nodeinfo(node, "2.0"))["usage"]


async def test_nodeinfo_metadata_node_name_follows_config(nodes: NodeFactory) -> None:
    node = await nodes.start(instance__name="Harbour Town", instance__description="By the sea")
    for version in VERSIONS:
        metadata = (await nodeinfo(node, version))["metadata"]
        assert metadata["nodeName"] == "Harbour Town"
        assert metadata["nodeDescription"] == "By the sea"


async def test_nodeinfo_open_registrations_follows_the_registration_mode(
    nodes: NodeFactory,
) -> None:
    # As Mastodon: open while anyone may sign up, approval or not; invite-only is not open.
    for mode, expected in (
        ("closed", False),
        ("invite", False),
        ("approval", True),
        ("open", True),
    ):
        node = await nodes.start(instance__registrations=mode)
        assert (await nodeinfo(node))["openRegistrations"] is expected, mode


@pytest.mark.parametrize("version", ["9.9", "1.0", "2.2", "2", "latest"])
async def test_nodeinfo_unknown_version_is_404_json(node: Node, version: str) -> None:
    async with node.http.get(f"/nodeinfo/{version}") as response:
        assert response.status == 404
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["error"]
