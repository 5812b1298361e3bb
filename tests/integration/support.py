"""Small helpers shared by the integration tests: database touches and raw HTTP."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from server.identity.tokens import issue_token
from server.storage.tables import access_tokens, accounts
from server.web.sessions import Cookies, open_session, web_client
from tests.harness import Node

AS2_MEDIA_TYPE = "application/activity+json"
AS2_CONTEXT = "https://www.w3.org/ns/activitystreams"
LD_AS2_MEDIA_TYPE = f'application/ld+json; profile="{AS2_CONTEXT}"'
AS2 = {"Accept": AS2_MEDIA_TYPE}
LD_AS2 = {"Accept": LD_AS2_MEDIA_TYPE}


async def mark_deleted(node: Node, username: str) -> None:
    """Mark a local account deleted, as account deletion does."""
    async with node.db.transaction() as conn:
        result = await conn.execute(
            update(accounts)
            .where(accounts.c.id == node.users[username].id)
            .values(deleted_at=node.clock())
        )
        assert result.rowcount == 1


async def revoke_all_tokens(node: Node) -> None:
    """Revoke every access token on the node."""
    async with node.db.transaction() as conn:
        await conn.execute(update(access_tokens).values(revoked_at=node.clock()))


async def set_note(node: Node, username: str, note: str) -> None:
    """Set an account's bio (plain text, as the user typed it)."""
    async with node.db.transaction() as conn:
        await conn.execute(
            update(accounts).where(accounts.c.id == node.users[username].id).values(note=note)
        )


async def raw_request(
    node: Node, target: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send the request target byte for byte (no client-side path normalisation)."""
    host, _, port = node.domain.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"{method} {target} HTTP/1.1", f"Host: {node.domain}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1])
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    if response_headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return status, response_headers, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return out


async def session_cookie(node: Node, username: str) -> dict[str, str]:
    """The Cookie header of a web client session for a local user (made if new), as signing
    in makes one."""
    account = await node.account(username) if username in node.users else None
    account = account or await node.create_user(username)
    async with node.db.transaction() as conn:
        client = await web_client(conn, node.urls, node.clock())
        issued = await issue_token(
            conn, account.id, client.scopes, client.name, node.clock(), application_id=client.id
        )
        session = await open_session(conn, issued.access_token, node.clock())
    return {"Cookie": f"{Cookies.of(node.urls).session}={session}"}
