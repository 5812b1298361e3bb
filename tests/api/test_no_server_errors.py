"""No route answers 500 to anything a client can send: random bodies, parameters and ids.

Every route the app serves is exercised (static files and long-lived streams aside) with a
valid token, random path ids (real ones among them), random query strings and random JSON or
form bodies, from a fixed seed so a failure reproduces.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from aiohttp import web

from tests.api.client import client_for
from tests.harness import Node, NodeFactory

SEED = 20261124
REQUESTS_PER_ROUTE = 25
_SKIPPED = re.compile(r"^/static/|^/api/v1/streaming(?!/health)")
_NAMES = [
    "limit",
    "max_id",
    "since_id",
    "min_id",
    "status",
    "visibility",
    "in_reply_to_id",
    "spoiler_text",
    "sensitive",
    "language",
    "q",
    "resolve",
    "type",
    "types[]",
    "exclude_types[]",
    "id[]",
    "acct",
    "local",
    "remote",
    "only_media",
    "exclude_replies",
    "pinned",
    "reblogs",
    "notify",
    "display_name",
    "note",
    "locked",
    "client_name",
    "redirect_uris",
    "scopes",
    "grant_type",
    "code",
    "client_id",
    "client_secret",
    "username",
    "password",
    "token",
    "resource",
    "page",
    "timeline[]",
    "stream",
    "tag",
    "offset",
    "following",
    "fields_attributes",
]


def _character(rng: random.Random) -> str:
    """Any character a client can encode (UTF-8 has no surrogates)."""
    code = rng.randrange(1, 0x2FFFF)
    return chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd"


def _scalar(rng: random.Random, real_ids: list[str]) -> Any:
    choice = rng.randrange(12)
    if choice == 0:
        return rng.choice(real_ids)
    if choice == 1:
        return rng.choice(["", " ", "0", "-1", "1e9", "99999999999999999999999", "NaN"])
    if choice == 2:
        return rng.choice([True, False, None])
    if choice == 3:
        return rng.randint(-(2**70), 2**70)
    if choice == 4:
        return rng.random() * 1e6
    if choice == 5:
        return "".join(_character(rng) for _ in range(rng.randrange(1, 40)))
    if choice == 6:
        return "x" * rng.choice([1000, 70_000])
    if choice == 7:
        return rng.choice(["public", "direct", "private", "unlisted", "accounts", "read", "@a@b"])
    if choice == 8:
        return rng.choice(["http://127.0.0.1:1/x", "javascript:alert(1)", "acct:x@y", "@x"])
    return "".join(rng.choice("abc123_@.#:/ ") for _ in range(rng.randrange(0, 20)))


def _value(rng: random.Random, real_ids: list[str], depth: int = 0) -> Any:
    if depth < 2 and rng.random() < 0.2:
        return [_value(rng, real_ids, depth + 1) for _ in range(rng.randrange(0, 4))]
    if depth < 2 and rng.random() < 0.1:
        return {
            rng.choice(_NAMES): _value(rng, real_ids, depth + 1) for _ in range(rng.randrange(3))
        }
    return _scalar(rng, real_ids)


def _query(rng: random.Random, real_ids: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(rng.randrange(0, 5)):
        value = _scalar(rng, real_ids)
        text = json.dumps(value) if not isinstance(value, str) else value
        pairs.append((rng.choice(_NAMES), text[:2000]))
    return pairs


def _path(template: str, rng: random.Random, real_ids: list[str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ("name", "username"):
            return rng.choice(["alice", "bob", "nobody", "ALICE", "a" * 40, "%00", "..%2F"])
        return rng.choice([*real_ids, "0", "abc", "-5", "9" * 25, "%F0%9F%98%80"])

    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", fill, template)


def _routes(app: web.Application) -> list[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        template = info.get("path") or info.get("formatter")
        if not template or _SKIPPED.search(template) or route.method == "HEAD":
            continue
        found.add((route.method, template))
    return sorted(found)


async def _seed(node: Node) -> list[str]:
    """Some real data, so random ids sometimes name something that exists."""
    alice = await client_for(node, "alice")
    await client_for(node, "bob")
    posted = await alice.post("/api/v1/statuses", status="hello @bob #tag")
    reply = await alice.post(
        "/api/v1/statuses", status="again", in_reply_to_id=posted.body["id"], visibility="direct"
    )
    return [
        posted.body["id"],
        reply.body["id"],
        str((await node.account("alice")).id),
        str((await node.account("bob")).id),
    ]


async def test_no_route_answers_500_to_random_input(nodes: NodeFactory) -> None:
    node = await nodes.start(api__requests_per_window=100_000)
    real_ids = await _seed(node)
    client = await client_for(node, "carol", "read write follow push")
    rng = random.Random(SEED)
    failures = []
    for method, template in _routes(node.app):
        for _ in range(REQUESTS_PER_ROUTE):
            path = _path(template, rng, real_ids)
            kwargs: dict[str, Any] = {"params": _query(rng, real_ids)}
            if method in ("POST", "PUT", "PATCH"):
                body = {rng.choice(_NAMES): _value(rng, real_ids) for _ in range(rng.randrange(5))}
                if rng.random() < 0.5:
                    kwargs["json"] = body if rng.random() < 0.9 else _value(rng, real_ids)
                else:
                    kwargs["data"] = {k: str(v)[:3000] for k, v in body.items()}
            answer = await client.request(method, path, **kwargs)
            if answer.status >= 500:
                failures.append((method, path, kwargs, answer.status, answer.body))
    assert not failures, failures[:5]
