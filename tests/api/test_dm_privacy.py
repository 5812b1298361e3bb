"""Direct messages, seen by someone who is not in them, on one node: nothing shows.

alice writes a public post, then a direct message to bob in reply to it (with a hashtag and a
picture); bob answers, likes and bookmarks it. eve follows both; she, and an anonymous client,
try every endpoint that can return a status, and the ActivityPub documents of the thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.client import ApiClient, client_for
from tests.api.test_media import fetch, picture, upload
from tests.harness import AS2, Node


@dataclass
class Thread:
    node: Node
    alice: ApiClient
    bob: ApiClient
    eve: ApiClient
    public: dict[str, Any]
    direct: dict[str, Any]  # alice's message to bob, a reply to her public post
    reply: dict[str, Any]  # bob's answer

    @property
    def secret_ids(self) -> list[str]:
        return [self.direct["id"], self.reply["id"]]

    @property
    def viewers(self) -> dict[str, ApiClient]:
        return {"eve": self.eve, "anonymous": ApiClient(self.node, None)}


@pytest.fixture
async def thread(node: Node) -> Thread:
    alice, bob, eve = [await client_for(node, n) for n in ("alice", "bob", "eve")]
    for name in ("alice", "bob"):
        account = (await eve.get("/api/v1/accounts/lookup", acct=name)).body
        assert (await eve.post(f"/api/v1/accounts/{account['id']}/follow")).status == 200
    public = (await alice.post("/api/v1/statuses", status="a public post #hushhush")).body
    media = (await upload(alice, picture("PNG"), description="the plan")).body
    direct = await alice.post(
        "/api/v1/statuses",
        status="@bob the secret plan #hushhush",
        visibility="direct",
        in_reply_to_id=public["id"],
        media_ids=[media["id"]],
    )
    assert direct.status == 200, direct.body
    reply = await bob.post(
        "/api/v1/statuses",
        status="@alice roger, secret kept",
        visibility="direct",
        in_reply_to_id=direct.body["id"],
    )
    assert reply.status == 200, reply.body
    for action in ("favourite", "bookmark"):
        assert (await bob.post(f"/api/v1/statuses/{direct.body['id']}/{action}")).status == 200
    return Thread(node, alice, bob, eve, public, direct.body, reply.body)


def _ids(body: Any) -> set[str]:
    """Every status id anywhere in an answer (statuses, notifications, search results...)."""
    found: set[str] = set()
    if isinstance(body, dict):
        if isinstance(body.get("id"), str) and "visibility" in body:
            found.add(body["id"])
        for value in body.values():
            found |= _ids(value)
    elif isinstance(body, list):
        for value in body:
            found |= _ids(value)
    return found


async def test_the_participants_see_the_thread(thread: Thread) -> None:
    for reader in (thread.alice, thread.bob):
        context = (await reader.get(f"/api/v1/statuses/{thread.direct['id']}/context")).body
        assert [s["id"] for s in context["descendants"]] == [thread.reply["id"]]
        assert (await reader.get(f"/api/v1/statuses/{thread.reply['id']}")).status == 200


@pytest.mark.parametrize("suffix", ["", "/context", "/favourited_by", "/reblogged_by", "/history"])
async def test_a_direct_message_is_not_found_by_outsiders(thread: Thread, suffix: str) -> None:
    for who, client in thread.viewers.items():
        for status_id in thread.secret_ids:
            answer = await client.get(f"/api/v1/statuses/{status_id}{suffix}")
            assert answer.status == 404, (who, status_id, suffix, answer.body)


async def test_outsiders_cannot_act_on_a_direct_message(thread: Thread) -> None:
    for action in ("favourite", "bookmark", "reblog", "pin", "unfavourite"):
        answer = await thread.eve.post(f"/api/v1/statuses/{thread.direct['id']}/{action}")
        assert answer.status == 404, (action, answer.body)
    assert (await thread.eve.get(f"/api/v1/statuses/{thread.direct['id']}/source")).status == 404


async def test_no_list_of_statuses_shows_a_direct_message_to_outsiders(thread: Thread) -> None:
    accounts = {
        name: (await thread.eve.get("/api/v1/accounts/lookup", acct=name)).body["id"]
        for name in ("alice", "bob")
    }
    paths = [
        ("/api/v1/timelines/public", {}),
        ("/api/v1/timelines/public", {"local": "true"}),
        ("/api/v1/timelines/tag/hushhush", {}),
        ("/api/v1/statuses", {"id[]": thread.secret_ids}),
        *((f"/api/v1/accounts/{i}/statuses", {}) for i in accounts.values()),
    ]
    signed_in_only = [
        ("/api/v1/timelines/home", {}),
        ("/api/v1/conversations", {}),
        ("/api/v1/notifications", {}),
        ("/api/v1/bookmarks", {}),
        ("/api/v1/favourites", {}),
        ("/users/eve/inbox", {"page": "true"}),
    ]
    for who, client in thread.viewers.items():
        for path, params in paths + (signed_in_only if who == "eve" else []):
            answer = await client.get(path, **params)
            assert answer.status == 200, (who, path, answer.body)
            assert not _ids(answer.body) & set(thread.secret_ids), (who, path)
            assert "secret" not in str(answer.body), (who, path)
    # The lists do show eve what is hers to see.
    assert thread.public["id"] in _ids((await thread.eve.get("/api/v1/timelines/home")).body)
    inbox = await thread.eve.get("/users/eve/inbox", page="true")
    assert thread.public["uri"] in str(inbox.body)
    # The public post's thread shows eve the post, and nothing of the direct replies.
    for client in thread.viewers.values():
        context = (await client.get(f"/api/v1/statuses/{thread.public['id']}/context")).body
        assert context == {"ancestors": [], "descendants": []}


async def test_search_finds_nothing_of_a_direct_message_for_outsiders(thread: Thread) -> None:
    queries = [thread.direct["uri"], thread.direct["url"], thread.reply["uri"], "secret"]
    for who, client in thread.viewers.items():
        for query in queries:
            for resolve in ("true", "false") if who == "eve" else ("false",):
                answer = await client.get("/api/v2/search", q=query, resolve=resolve)
                assert answer.status == 200, (who, query, answer.body)
                assert answer.body["statuses"] == [], (who, query)
        # A hashtag only a direct message carries is no one else's business either.
        found = (await client.get("/api/v2/search", q="hushh", type="hashtags")).body
        assert [tag["name"] for tag in found["hashtags"]] == ["hushhush"]  # the public post's
    alone = (await thread.bob.get("/api/v2/search", q="roger")).body["statuses"]
    assert [s["id"] for s in alone] == [thread.reply["id"]]  # participants find it


async def test_a_hashtag_used_only_in_direct_messages_is_not_listed(node: Node) -> None:
    alice = await client_for(node, "alice")
    await client_for(node, "bob")
    await alice.post("/api/v1/statuses", status="@bob #onlyhere", visibility="direct")
    eve = await client_for(node, "eve")
    for client in (eve, ApiClient(node, None)):
        found = (await client.get("/api/v2/search", q="onlyhere", type="hashtags")).body
        assert found["hashtags"] == []


async def test_the_activitypub_documents_of_a_direct_message_are_not_served(
    thread: Thread,
) -> None:
    node = thread.node
    anonymous = ApiClient(node, None)
    for status in (thread.direct, thread.reply):
        for path in (
            status["uri"].removeprefix(node.base_url),
            status["uri"].removeprefix(node.base_url) + "/activity",
        ):
            for client in (anonymous, thread.eve):
                answer = await client.request("GET", path, headers=AS2)
                assert answer.status == 404, (path, answer.status)
        page = status["url"].removeprefix(node.base_url)
        assert (await anonymous.request("GET", page)).status == 404
    for client in (anonymous, thread.eve):  # eve's token on alice's outbox: the public one
        outbox = await client.request("GET", "/users/alice/outbox?page=true", headers=AS2)
        assert outbox.status == 200
        assert "secret" not in str(outbox.body)
        assert thread.direct["uri"] not in str(outbox.body)
    # No FEP-7888 context collection is served for any thread.
    context = f"/contexts/{thread.public['id']}"
    assert (await anonymous.request("GET", context, headers=AS2)).status == 404


async def test_a_direct_messages_picture_is_private_and_gone_with_it(thread: Thread) -> None:
    (picture_entity,) = thread.direct["media_attachments"]
    url = picture_entity["url"]
    token = url.rsplit("/", 1)[1].split(".")[0]
    assert len(token) >= 32  # random, not derived from an id
    assert token not in (thread.direct["id"], picture_entity["id"])
    code, _, headers = await fetch(thread.node, url)
    assert code == 200
    assert headers["Cache-Control"].startswith("private")
    assert (await thread.alice.delete(f"/api/v1/statuses/{thread.direct['id']}")).status == 200
    for address in (url, picture_entity["preview_url"]):
        assert (await fetch(thread.node, address))[0] == 404


async def test_an_outsider_cannot_report_a_direct_message_nor_learn_it_exists(
    thread: Thread,
) -> None:
    alice = (await thread.eve.get("/api/v1/accounts/lookup", acct="alice")).body["id"]
    unknown = str(int(thread.direct["id"]) + 1)
    answers = []
    for status_id in (thread.direct["id"], unknown):
        answer = await thread.eve.post(
            "/api/v1/reports", account_id=alice, status_ids=[status_id], comment="?"
        )
        answers.append((answer.status, answer.body["error"].replace(status_id, "N")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 422
    # bob, who is in it, may report it.
    bob_report = await thread.bob.post(
        "/api/v1/reports", account_id=alice, status_ids=[thread.direct["id"]]
    )
    assert bob_report.status == 200, bob_report.body


async def test_a_direct_reply_is_not_counted_among_a_posts_replies(thread: Thread) -> None:
    # As Mastodon counts them: only public and unlisted replies.
    for client in (*thread.viewers.values(), thread.alice):
        shown = (await client.get(f"/api/v1/statuses/{thread.public['id']}")).body
        assert shown["replies_count"] == 0
    await thread.bob.post(
        "/api/v1/statuses", status="a public answer", in_reply_to_id=thread.public["id"]
    )
    shown = (await thread.eve.get(f"/api/v1/statuses/{thread.public['id']}")).body
    assert shown["replies_count"] == 1


async def test_a_direct_message_cannot_be_pinned_to_a_profile(thread: Thread) -> None:
    answer = await thread.alice.post(f"/api/v1/statuses/{thread.direct['id']}/pin")
    assert answer.status == 422, answer.body
    featured = await ApiClient(thread.node, None).request(
        "GET", "/users/alice/collections/featured?page=true", headers=AS2
    )
    assert featured.status == 200
    assert "secret" not in str(featured.body)
