"""What the registration tests share: an app's own token, signing up, invites, the database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from server.identity.invites import Invite, create_invite
from server.storage.tables import accounts, invites
from tests.api.client import Answer, ApiClient
from tests.harness import Node

SCOPES = "read write follow push"
PASSWORD = "correct horse battery staple"


async def app_client(node: Node, scopes: str = SCOPES) -> ApiClient:
    """A client holding an application's own token (client_credentials), as apps sign up."""
    anonymous = ApiClient(node, None)
    app = await anonymous.post(
        "/api/v1/apps",
        client_name="sign-up test",
        redirect_uris="urn:ietf:wg:oauth:2.0:oob",
        scopes=scopes,
    )
    assert app.status == 200, app.body
    form = {
        "grant_type": "client_credentials",
        "client_id": app.body["client_id"],
        "client_secret": app.body["client_secret"],
        "scope": scopes,
    }
    async with node.http.post("/oauth/token", data=form) as response:
        assert response.status == 200
        return ApiClient(node, (await response.json())["access_token"])


async def sign_up(client: ApiClient, username: str, **fields: Any) -> Answer:
    """POST /api/v1/accounts with sensible defaults for what is not given."""
    body = {
        "username": username,
        "email": f"{username}@example.com",
        "password": PASSWORD,
        "agreement": True,
        "locale": "en",
        **fields,
    }
    return await client.request("POST", "/api/v1/accounts", json=body)


async def local_account_count(node: Node) -> int:
    async with node.db.read() as conn:
        query = (
            select(func.count())
            .select_from(accounts)
            .where(accounts.c.domain == "", accounts.c.is_instance_actor.is_(False))
        )
        return int(await conn.scalar(query))


async def new_invite(
    node: Node, max_uses: int | None = None, expires_in: timedelta | None = None
) -> Invite:
    """An invite as `kith invite create` makes it, on the node's clock."""
    now = node.clock()
    async with node.db.transaction() as conn:
        return await create_invite(
            conn, now, max_uses, now + expires_in if expires_in is not None else None
        )


async def invite_uses(node: Node, invite: Invite) -> int:
    async with node.db.read() as conn:
        return int(await conn.scalar(select(invites.c.uses).where(invites.c.id == invite.id)))
