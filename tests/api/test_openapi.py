"""The OpenAPI document stays true: it lists exactly the client routes, and answers match it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from server.api.openapi import OPERATIONS, SCHEMAS, find_operation
from tests.api.client import ApiClient, client_for
from tests.harness import Node

# Client-facing routes; federation (/inbox, actors, WebFinger) is described in FEDERATION.md.
_CLIENT_ROUTE = re.compile(r"^/api/|^/oauth/|^/\.well-known/oauth-authorization-server$")


def _served(node: Node) -> set[tuple[str, str]]:
    served = set()
    for route in node.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        path = re.sub(r"\{([^}:]+):[^}]*\}", r"{\1}", path)
        if _CLIENT_ROUTE.search(path) and not path.endswith("/") and route.method != "HEAD":
            served.add((route.method, path))
    return served


async def test_every_client_route_is_documented_and_every_documented_route_served(
    node: Node,
) -> None:
    documented = {(operation.method, operation.path) for operation in OPERATIONS}
    served = _served(node)
    assert served - documented == set(), "routes missing from server/api/openapi.py"
    assert documented - served == set(), "documented operations that are not served"


async def test_the_document_is_served_and_its_references_resolve(node: Node) -> None:
    answer = await ApiClient(node, None).get("/api/openapi.json")
    assert answer.status == 200
    document = answer.body
    assert document["openapi"] == "3.1.0"
    text = repr(document)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in document["components"]["schemas"], name
    for schema in SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def validate(method: str, template: str, body: Any) -> None:
    """A response body checked against the schema its operation declares."""
    operation = find_operation(method, template)
    assert operation is not None, f"{method} {template} is not documented"
    schema = {**operation.response, "components": {"schemas": SCHEMAS}}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


async def test_answers_match_their_documented_schemas(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    posted = await alice.post("/api/v1/statuses", status="hi @bob #tag", spoiler_text="cw")
    validate("POST", "/api/v1/statuses", posted.body)
    status_id = posted.body["id"]
    reply = await bob.post("/api/v1/statuses", status="yo", in_reply_to_id=status_id)
    validate("POST", "/api/v1/statuses", reply.body)
    boost = await bob.post(f"/api/v1/statuses/{status_id}/reblog")
    validate("POST", "/api/v1/statuses/{id}/reblog", boost.body)
    await alice.put(f"/api/v1/statuses/{status_id}", status="edited @bob")
    bob_id = str((await node.account("bob")).id)
    await alice.post(f"/api/v1/statuses/{reply.body['id']}/favourite")
    checks = [
        ("GET", "/api/v1/accounts/lookup", "/api/v1/accounts/lookup?acct=bob"),
        ("GET", "/api/v1/accounts/{id}", f"/api/v1/accounts/{bob_id}"),
        ("GET", "/api/v1/accounts/{id}/statuses", f"/api/v1/accounts/{bob_id}/statuses"),
        ("GET", "/api/v1/accounts/relationships", f"/api/v1/accounts/relationships?id[]={bob_id}"),
        ("GET", "/api/v1/accounts/search", "/api/v1/accounts/search?q=bo"),
        ("GET", "/api/v2/search", "/api/v2/search?q=bo"),
        ("GET", "/api/v1/favourites", "/api/v1/favourites"),
        ("POST", "/api/v1/accounts/{id}/follow", f"/api/v1/accounts/{bob_id}/follow"),
        ("GET", "/api/v1/accounts/{id}/following", f"/api/v1/accounts/{bob_id}/following"),
        ("GET", "/api/v1/statuses/{id}", f"/api/v1/statuses/{status_id}"),
        ("GET", "/api/v1/statuses/{id}/context", f"/api/v1/statuses/{status_id}/context"),
        ("GET", "/api/v1/statuses/{id}/history", f"/api/v1/statuses/{status_id}/history"),
        ("GET", "/api/v1/statuses/{id}/source", f"/api/v1/statuses/{status_id}/source"),
        (
            "GET",
            "/api/v1/statuses/{id}/reblogged_by",
            f"/api/v1/statuses/{status_id}/reblogged_by",
        ),
        ("GET", "/api/v1/timelines/home", "/api/v1/timelines/home"),
        ("GET", "/api/v1/timelines/public", "/api/v1/timelines/public"),
        ("GET", "/api/v1/timelines/tag/{hashtag}", "/api/v1/timelines/tag/tag"),
        ("GET", "/api/v1/accounts/verify_credentials", "/api/v1/accounts/verify_credentials"),
        ("GET", "/api/v1/instance", "/api/v1/instance"),
        ("GET", "/api/v2/instance", "/api/v2/instance"),
    ]
    for method, template, path in checks:
        answer = await alice.request(method, path)
        assert answer.status == 200, (path, answer.body)
        validate(method, template, answer.body)
    refused = await bob.get("/api/v1/statuses/0")
    assert refused.status == 404
    jsonschema.validate(refused.body, SCHEMAS["Error"])
