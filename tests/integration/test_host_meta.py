"""host-meta (RFC 6415): the XRD and JSON forms point at this node's WebFinger endpoint."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest

from tests.harness import Node

XRD_NS = "{http://docs.oasis-open.org/ns/xri/xrd-1.0}"


def lrdd_template_of_xrd(text: str) -> str:
    root = ET.fromstring(text)  # noqa: S314 - our own node's document
    assert root.tag == f"{XRD_NS}XRD"
    templates = [
        link.get("template") for link in root.iter(f"{XRD_NS}Link") if link.get("rel") == "lrdd"
    ]
    assert len(templates) == 1
    return templates[0]


async def assert_template_resolves_alice(node: Node, template: str) -> None:
    assert template == node.url("/.well-known/webfinger?resource={uri}")
    url = template.replace("{uri}", quote(f"acct:alice@{node.domain}", safe=""))
    async with node.http.get(url) as response:
        assert response.status == 200
        jrd = await response.json(content_type=None)
    assert jrd["subject"] == f"acct:alice@{node.domain}"


async def test_host_meta_is_xrd_with_lrdd_template_for_this_node(node: Node) -> None:
    await node.create_user("alice")
    async with node.http.get("/.well-known/host-meta") as response:
        assert response.status == 200
        assert response.content_type == "application/xrd+xml"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        text = await response.text()
    await assert_template_resolves_alice(node, lrdd_template_of_xrd(text))


async def test_host_meta_asked_for_xrd_explicitly_is_xrd(node: Node) -> None:
    headers = {"Accept": "application/xrd+xml"}
    async with node.http.get("/.well-known/host-meta", headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/xrd+xml"
        lrdd_template_of_xrd(await response.text())


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/.well-known/host-meta.json", {}),
        ("/.well-known/host-meta?format=json", {}),
        ("/.well-known/host-meta", {"Accept": "application/json"}),
    ],
    ids=["json_path", "format_query", "accept_json"],
)
async def test_host_meta_json_variant_has_lrdd_template(
    node: Node, path: str, headers: dict[str, str]
) -> None:
    await node.create_user("alice")
    async with node.http.get(path, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body = await response.json()
    lrdd = [link for link in body["links"] if link["rel"] == "lrdd"]
    assert len(lrdd) == 1
    await assert_template_resolves_alice(node, lrdd[0]["template"])
