"""A bearer-token HTTP client for the Mastodon API of a live test node."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.harness import Node


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def _decoded(text: str, content_type: str) -> Any:
    """JSON bodies decoded; anything else (HTML pages, files) kept as text."""
    if not text:
        return None
    if "json" in content_type:
        return json.loads(text)
    return text


class ApiClient:
    """Requests as one user (or anonymously with `token=None`)."""

    def __init__(self, node: Node, token: str | None) -> None:
        self.node = node
        self.token = token

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        headers = dict(kwargs.pop("headers", {}))
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with self.node.http.request(
            method, self.node.url(path), headers=headers, **kwargs
        ) as response:
            text = await response.text(errors="replace")
            return Answer(
                response.status, _decoded(text, response.content_type), dict(response.headers)
            )

    async def get(self, path: str, **params: Any) -> Answer:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, **fields: Any) -> Answer:
        return await self.request("POST", path, json=fields)

    async def put(self, path: str, **fields: Any) -> Answer:
        return await self.request("PUT", path, json=fields)

    async def delete(self, path: str) -> Answer:
        return await self.request("DELETE", path)


async def client_for(
    node: Node, username: str, scopes: str = "read write follow push"
) -> ApiClient:
    """A signed-in client for a (new) local user."""
    if username not in node.users:
        await node.create_user(username)
    return ApiClient(node, await node.create_token(username, scopes))


async def admin_client_for(node: Node, username: str = "root") -> ApiClient:
    """A signed-in client for a (new) local admin, with the admin scopes."""
    await node.create_user(username, is_admin=True)
    return await client_for(node, username, "read write admin:read admin:write")
