"""Password resets by email, end to end through a real SMTP server on loopback (aiosmtpd).

The node sends the link; the test reads it from the mail the server received, opens it and
sets a new password, as a person would; the API and the HTML forms are both exercised.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import Message
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.api.client import ApiClient
from tests.harness import Node, NodeFactory, eventually

OLD, NEW = "old password 123", "brand new password"
SMTP_USER, SMTP_PASSWORD = "kith", "smtp secret"


class Inbox:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(message_from_bytes(envelope.original_content))  # type: ignore[attr-defined]
        return "250 OK"

    def authenticate(
        self, server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
    )
    await asyncio.to_thread(controller.start)
    yield inbox, port
    await asyncio.to_thread(controller.stop)


async def _node(nodes: NodeFactory, port: int) -> Node:
    node = await nodes.start(
        smtp__host="127.0.0.1",
        smtp__port=port,
        smtp__security="none",
        smtp__username=SMTP_USER,
        smtp__password=SMTP_PASSWORD,
        smtp__from_address="Kith <no-reply@example.org>",
    )
    await node.create_user("alice", password=OLD, email="alice@example.com")
    return node


def _link(message: Message) -> str:
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return re.search(r"http://\S+", body).group(0)  # type: ignore[union-attr]


def _token(link: str) -> str:
    return parse_qs(urlsplit(link).query)["reset_password_token"][0]


async def _grant(node: Node, password: str) -> int:
    app = await ApiClient(node, None).post(
        "/api/v1/apps", client_name="t", redirect_uris="urn:ietf:wg:oauth:2.0:oob"
    )
    form = {
        "grant_type": "password",
        "client_id": app.body["client_id"],
        "client_secret": app.body["client_secret"],
        "username": "alice",
        "password": password,
        "scope": "read",
    }
    async with node.http.post("/oauth/token", data=form) as response:
        return response.status


async def test_a_reset_link_by_email_changes_the_password_once_and_signs_out_everywhere(
    nodes: NodeFactory, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    node = await _node(nodes, port)
    signed_in = ApiClient(node, await node.create_token("alice"))
    anonymous = ApiClient(node, None)
    asked = await anonymous.post("/api/kith/v1/password_reset", email=" ALICE@example.COM ")
    assert (asked.status, asked.body) == (202, {})
    await eventually(lambda: _count(inbox), until=lambda n: n == 1)
    mail = inbox.messages[0]
    assert mail["To"] == "alice@example.com"
    assert mail["From"] == "Kith <no-reply@example.org>"
    assert "password" in mail["Subject"].lower()
    assert inbox.logins  # the node signed in to the mail server
    link = _link(mail)
    assert link.startswith(f"{node.base_url}/auth/password/edit?reset_password_token=")
    token = _token(link)

    async with node.http.get(link.removeprefix(node.base_url)) as page:
        assert page.status == 200
        assert page.headers["Cache-Control"] == "no-store"
        assert "Choose a new password" in await page.text()
    short = await anonymous.post("/api/kith/v1/password_reset/confirm", token=token, password="x")
    assert short.status == 422
    assert short.body["details"]["password"][0]["error"] == "ERR_TOO_SHORT"
    done = await anonymous.post("/api/kith/v1/password_reset/confirm", token=token, password=NEW)
    assert done.status == 200
    assert (await signed_in.get("/api/v1/accounts/verify_credentials")).status == 401
    assert await _grant(node, OLD) == 400  # invalid_grant
    assert await _grant(node, NEW) == 200
    again = await anonymous.post(
        "/api/kith/v1/password_reset/confirm", token=token, password="another password"
    )
    assert again.status == 422
    assert again.body["details"]["token"][0]["error"] == "ERR_INVALID"
    assert await _grant(node, NEW) == 200


async def _count(inbox: Inbox) -> int:
    return len(inbox.messages)


async def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    nodes: NodeFactory, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    node = await _node(nodes, port)
    anonymous = ApiClient(node, None)
    unknown = await anonymous.post("/api/kith/v1/password_reset", email="nobody@example.com")
    known = await anonymous.post("/api/kith/v1/password_reset", email="alice@example.com")
    assert (unknown.status, unknown.body) == (known.status, known.body) == (202, {})
    await eventually(lambda: _count(inbox), until=lambda n: n >= 1)
    await asyncio.sleep(0.2)
    assert [m["To"] for m in inbox.messages] == ["alice@example.com"]
    bad = await anonymous.post("/api/kith/v1/password_reset", email="not an address")
    assert bad.status == 422
    assert bad.body["details"]["email"][0]["error"] == "ERR_INVALID"


async def test_a_link_expires_after_an_hour(nodes: NodeFactory, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    node = await _node(nodes, port)
    anonymous = ApiClient(node, None)
    await anonymous.post("/api/kith/v1/password_reset", email="alice@example.com")
    await eventually(lambda: _count(inbox), until=lambda n: n == 1)
    link = _link(inbox.messages[0])
    node.clock.advance(minutes=61)
    async with node.http.get(link.removeprefix(node.base_url)) as page:
        assert page.status == 410
        assert "expired" in await page.text()
    late = await anonymous.post(
        "/api/kith/v1/password_reset/confirm", token=_token(link), password=NEW
    )
    assert late.status == 422
    assert await _grant(node, OLD) == 200


async def test_the_html_forms_ask_for_a_link_and_set_the_password(
    nodes: NodeFactory, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    node = await _node(nodes, port)
    async with node.http.get("/auth/password/new") as page:
        assert page.status == 200
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert 'action="/auth/password"' in await page.text()
    async with node.http.post("/auth/password", data={"email": "alice@example.com"}) as page:
        assert page.status == 200
        assert "on its way" in await page.text()
    await eventually(lambda: _count(inbox), until=lambda n: n == 1)
    token = _token(_link(inbox.messages[0]))
    async with node.http.get(f"/auth/password/edit?reset_password_token={token}") as page:
        form = await page.text()
    assert unescape(re.search(r'name="reset_password_token" value="([^"]+)"', form).group(1)) == (  # type: ignore[union-attr]
        token
    )
    fields = {"reset_password_token": token, "password": NEW, "password_confirmation": "other"}
    async with node.http.post("/auth/password/edit", data=fields) as page:
        assert page.status == 422
        assert "match" in await page.text()
    fields["password_confirmation"] = NEW
    async with node.http.post("/auth/password/edit", data=fields) as page:
        assert page.status == 200
        assert "has been changed" in await page.text()
    assert await _grant(node, NEW) == 200
    async with node.http.post("/auth/password/edit", data=fields) as page:
        assert page.status == 410


async def test_without_a_mail_server_resets_point_to_the_operator(node: Node) -> None:
    await node.create_user("alice", password=OLD, email="alice@example.com")
    answer = await ApiClient(node, None).post(
        "/api/kith/v1/password_reset", email="alice@example.com"
    )
    assert answer.status == 403
    assert "kith user reset-password" in answer.body["error_description"]
    async with node.http.get("/auth/password/new") as page:
        assert "kith user reset-password" in await page.text()
    async with node.http.post("/auth/password", data={"email": "alice@example.com"}) as page:
        assert "kith user reset-password" in await page.text()


async def test_a_mail_server_that_is_down_changes_nothing_the_client_sees(
    nodes: NodeFactory,
) -> None:
    node = await nodes.start(smtp__host="127.0.0.1", smtp__port=_free_port(), smtp__security="none")
    await node.create_user("alice", password=OLD, email="alice@example.com")
    answer = await ApiClient(node, None).post(
        "/api/kith/v1/password_reset", email="alice@example.com"
    )
    assert (answer.status, answer.body) == (202, {})
    assert await _grant(node, OLD) == 200


async def test_reset_requests_are_limited_per_address(
    nodes: NodeFactory, smtp: tuple[Inbox, int]
) -> None:
    _, port = smtp
    node = await nodes.start(
        smtp__host="127.0.0.1",
        smtp__port=port,
        smtp__security="none",
        api__sign_up_attempts_per_window=3,
    )
    anonymous = ApiClient(node, None)
    statuses = [
        (await anonymous.post("/api/kith/v1/password_reset", email=f"u{i}@example.com")).status
        for i in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
