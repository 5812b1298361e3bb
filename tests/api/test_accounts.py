"""Mastodon account endpoints on live nodes: profiles, relations, lookup across servers."""

from __future__ import annotations

import io

import aiohttp
from PIL import Image

from tests.api.client import ApiClient, client_for
from tests.api.test_media import fetch, picture, stored_files
from tests.harness import Node, NodeFactory, eventually


async def test_lookup_and_get_a_local_account(node: Node) -> None:
    alice = await client_for(node, "alice")
    await node.create_user("bob")
    for acct in ("bob", "@bob", f"bob@{node.domain}", "BOB"):
        found = await alice.get("/api/v1/accounts/lookup", acct=acct)
        assert found.status == 200, acct
        assert found.body["acct"] == "bob"
    bob_id = found.body["id"]
    assert (await ApiClient(node, None).get(f"/api/v1/accounts/{bob_id}")).body["username"] == "bob"
    assert (await alice.get("/api/v1/accounts/lookup", acct="nobody")).status == 404
    assert (await alice.get("/api/v1/accounts/lookup")).status == 422
    assert (await alice.get("/api/v1/accounts/123")).status == 404


async def test_follow_a_user_on_another_node_through_lookup(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    bob = await client_for(there, "bob")
    found = await alice.get("/api/v1/accounts/lookup", acct=f"bob@{there.domain}")
    assert found.status == 200
    assert found.body["acct"] == f"bob@{there.domain}"
    assert found.body["url"] == there.url("/@bob")
    relation = await alice.post(f"/api/v1/accounts/{found.body['id']}/follow", notify=True)
    assert relation.status == 200
    assert relation.body["requested"] or relation.body["following"]

    async def accepted() -> bool:
        state = await alice.get("/api/v1/accounts/relationships", **{"id[]": found.body["id"]})
        return state.body[0]["following"] is True

    await eventually(accepted)
    state = (await alice.get("/api/v1/accounts/relationships", **{"id[]": found.body["id"]})).body
    assert state[0]["notifying"] is True
    me = (await bob.get("/api/v1/accounts/verify_credentials")).body
    assert me["followers_count"] == 1
    followers = await bob.get(f"/api/v1/accounts/{me['id']}/followers")
    assert [a["acct"] for a in followers.body] == [f"alice@{here.domain}"]


async def test_search_v2_resolves_a_remote_handle_and_status_url(nodes: NodeFactory) -> None:
    here, there = await nodes.start(), await nodes.start()
    alice = await client_for(here, "alice")
    bob = await client_for(there, "bob")
    posted = (await bob.post("/api/v1/statuses", status="findable")).body
    result = await alice.get("/api/v2/search", q=f"@bob@{there.domain}", resolve="true")
    assert result.status == 200
    assert [a["acct"] for a in result.body["accounts"]] == [f"bob@{there.domain}"]
    by_url = await alice.get("/api/v2/search", q=posted["uri"], resolve="true")
    assert [s["content"] for s in by_url.body["statuses"]] == ["<p>findable</p>"]
    by_page = await alice.get("/api/v2/search", q=posted["url"], resolve="true")
    assert [s["uri"] for s in by_page.body["statuses"]] == [posted["uri"]]
    anonymous = ApiClient(here, None)
    assert (await anonymous.get("/api/v2/search", q="x", resolve="true")).status == 401
    assert (await alice.get("/api/v2/search", q="x", type="people")).status == 422


async def test_search_finds_local_accounts_and_hashtags(node: Node) -> None:
    alice = await client_for(node, "alice")
    await node.create_user("alicia")
    await node.create_user("bob")
    await alice.post("/api/v1/statuses", status="#kittens and #kith")
    result = (await alice.get("/api/v2/search", q="ali")).body
    assert sorted(a["username"] for a in result["accounts"]) == ["alice", "alicia"]
    tags = (await alice.get("/api/v2/search", q="#kit")).body["hashtags"]
    assert sorted(t["name"] for t in tags) == ["kith", "kittens"]


async def test_account_statuses_respect_visibility_and_filters(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    public = (await alice.post("/api/v1/statuses", status="public #tagged")).body["id"]
    private = (await alice.post("/api/v1/statuses", status="mine", visibility="private")).body["id"]
    reply = (await alice.post("/api/v1/statuses", status="self", in_reply_to_id=public)).body["id"]
    alice_id = (await alice.get("/api/v1/accounts/verify_credentials")).body["id"]
    path = f"/api/v1/accounts/{alice_id}/statuses"
    assert [s["id"] for s in (await bob.get(path)).body] == [reply, public]
    assert [s["id"] for s in (await alice.get(path)).body] == [reply, private, public]
    assert [s["id"] for s in (await bob.get(path, tagged="tagged")).body] == [public]
    assert (await bob.get(path, only_media="true")).body == []
    await bob.post(f"/api/v1/accounts/{alice_id}/follow")
    assert [s["id"] for s in (await bob.get(path)).body] == [reply, private, public]


async def test_block_mute_and_their_lists(node: Node) -> None:
    alice = await client_for(node, "alice")
    await node.create_user("bob")
    bob_id = str((await node.account("bob")).id)
    followed = await alice.post(f"/api/v1/accounts/{bob_id}/follow", reblogs=False)
    assert followed.body["following"] is True
    assert followed.body["showing_reblogs"] is False
    blocked = await alice.post(f"/api/v1/accounts/{bob_id}/block")
    assert blocked.body["blocking"] is True
    assert blocked.body["following"] is False
    assert [a["id"] for a in (await alice.get("/api/v1/blocks")).body] == [bob_id]
    muted = await alice.post(f"/api/v1/accounts/{bob_id}/mute", notifications=False)
    assert muted.body["muting"] is True
    assert muted.body["muting_notifications"] is False
    assert [a["id"] for a in (await alice.get("/api/v1/mutes")).body] == [bob_id]
    assert (await alice.post(f"/api/v1/accounts/{bob_id}/unblock")).body["blocking"] is False
    assert (await alice.post(f"/api/v1/accounts/{bob_id}/unmute")).body["muting"] is False
    assert (await alice.post("/api/v1/accounts/1/follow")).status == 404
    alice_id = str((await node.account("alice")).id)
    assert (await alice.post(f"/api/v1/accounts/{alice_id}/follow")).status == 422


async def test_follow_requests_to_a_locked_account(node: Node) -> None:
    bob = await client_for(node, "bob")
    await bob.request("PATCH", "/api/v1/accounts/update_credentials", json={"locked": True})
    alice = await client_for(node, "alice")
    bob_id = str((await node.account("bob")).id)
    alice_id = str((await node.account("alice")).id)
    assert (await alice.post(f"/api/v1/accounts/{bob_id}/follow")).body["requested"] is True
    assert [a["id"] for a in (await bob.get("/api/v1/follow_requests")).body] == [alice_id]
    answered = await bob.post(f"/api/v1/follow_requests/{alice_id}/authorize")
    assert answered.body["followed_by"] is True
    assert (await bob.get("/api/v1/follow_requests")).body == []
    assert (await bob.post(f"/api/v1/follow_requests/{alice_id}/reject")).status == 404


async def test_favourites_and_bookmarks_lists(node: Node) -> None:
    alice = await client_for(node, "alice")
    bob = await client_for(node, "bob")
    first = (await alice.post("/api/v1/statuses", status="one")).body["id"]
    second = (await alice.post("/api/v1/statuses", status="two")).body["id"]
    await bob.post(f"/api/v1/statuses/{second}/favourite")
    await bob.post(f"/api/v1/statuses/{first}/favourite")
    await bob.post(f"/api/v1/statuses/{first}/bookmark")
    favourites = await bob.get("/api/v1/favourites")
    assert [s["id"] for s in favourites.body] == [first, second]
    assert "Link" in favourites.headers
    assert [s["id"] for s in (await bob.get("/api/v1/bookmarks")).body] == [first]


async def test_update_credentials_changes_the_profile(node: Node) -> None:
    alice = await client_for(node, "alice")
    answer = await alice.request(
        "PATCH",
        "/api/v1/accounts/update_credentials",
        data={"display_name": "Alice A.", "note": "Hello", "locked": "1", "bot": "true"},
    )
    assert answer.status == 200, answer.body
    assert answer.body["display_name"] == "Alice A."
    assert answer.body["locked"] is True
    assert answer.body["bot"] is True
    assert answer.body["source"]["note"] == "Hello"
    too_long = await alice.request(
        "PATCH", "/api/v1/accounts/update_credentials", json={"display_name": "x" * 101}
    )
    assert too_long.status == 422


async def _update_with_files(client: ApiClient, **files: bytes) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("display_name", "Alice with a face")
    for name, data in files.items():
        form.add_field(name, data, filename=f"{name}.png", content_type="image/png")
    answer = await client.request("PATCH", "/api/v1/accounts/update_credentials", data=form)
    return answer.status, answer.body


async def test_update_credentials_takes_an_avatar_and_the_profile_api_removes_it(
    node: Node,
) -> None:
    alice = await client_for(node, "alice")
    status, body = await _update_with_files(alice, avatar=picture("PNG", (900, 300)))
    assert status == 200, body
    assert body["display_name"] == "Alice with a face"
    assert body["avatar"] == body["avatar_static"]
    assert "/media/" in body["avatar"]
    fetched, data, _ = await fetch(node, body["avatar"])
    assert fetched == 200
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (400, 400)  # cut to a square, as the web settings do
    again = (await alice.get("/api/v1/accounts/verify_credentials")).body
    assert again["avatar"] == body["avatar"]

    removed = await alice.request("DELETE", "/api/v1/profile/avatar")
    assert removed.status == 200, removed.body
    assert "/media/" not in removed.body["avatar"]
    assert removed.body["display_name"] == "Alice with a face"


async def test_a_bad_avatar_or_a_header_changes_nothing_and_says_why(node: Node) -> None:
    alice = await client_for(node, "alice")
    before = (await alice.get("/api/v1/accounts/verify_credentials")).body
    for files in (
        {"avatar": b"this is not a picture"},
        {"header": picture("PNG")},
        {"avatar": picture("PNG"), "header": picture("PNG")},
    ):
        status, body = await _update_with_files(alice, **files)
        assert status == 422, (files.keys(), body)
        assert body["error"]
    too_long = aiohttp.FormData()
    too_long.add_field("display_name", "x" * 101)
    too_long.add_field("avatar", picture("PNG"), filename="a.png", content_type="image/png")
    answer = await alice.request("PATCH", "/api/v1/accounts/update_credentials", data=too_long)
    assert answer.status == 422
    assert stored_files(node) == []
    assert (await alice.get("/api/v1/accounts/verify_credentials")).body == before
