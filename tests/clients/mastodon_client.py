"""Mastodon.py, unmodified, signed in to a live test node (it is synchronous: run it in a
thread so the node, in this event loop, can answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from mastodon import Mastodon

from tests.harness import Node

PASSWORD = "correct horse battery staple"
SCOPES = ["read", "write", "follow", "push"]


class Client:
    """Calls Mastodon.py methods off the event loop: `await client.call("status_post", ...)`."""

    def __init__(self, api: Mastodon) -> None:
        self.api = api

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        function: Callable[..., Any] = getattr(self.api, method)
        return await asyncio.to_thread(function, *args, **kwargs)


async def signed_in(node: Node, username: str) -> Client:
    """A new user on `node`, signed in through an app and the password grant."""
    await node.create_user(username, password=PASSWORD)
    client_id, secret = await asyncio.to_thread(
        Mastodon.create_app, "kith-tests", api_base_url=node.base_url, scopes=SCOPES
    )
    api = Mastodon(
        client_id=client_id,
        client_secret=secret,
        api_base_url=node.base_url,
        version_check_mode="none",
    )
    await asyncio.to_thread(api.log_in, username, PASSWORD, scopes=SCOPES, allow_http=True)
    return Client(api)
