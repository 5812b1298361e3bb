"""How soon a chat message reaches the recipient's streaming client (issue 6: ≤ 100 ms from
being stored on the recipient's node).

Run: python bench/chat.py [--messages 200] [--rate 10] [--fanout 0] [--runs 3]

Two nodes run in this process, each with SQLite in a temporary directory, talking real HTTP
on loopback: alice on node A, bob on node B, in a one-to-one chat. Bob's client holds a
WebSocket to node B's `direct` stream. Alice sends `--messages` chat messages through the
chats API at `--rate` a second; for each, the time from just before her POST to the moment
bob's client hears the `kith:chat` event carrying it is end to end: A stores and delivers, B's
inbox takes it and applies it, B's stream renders it. That is an upper bound on "stored on the
recipient's node → heard" (it includes A's side and the HTTP hop too). A second figure, same
node: carol on node B sends to bob. With `--fanout N`, alice first posts a public status to N
remote followers on a third, slow node (it answers after 200 ms) so that the chat messages
travel while that fan-out is queued (private before bulk). Medians of each run's p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from common import BenchNode, percentile, start_node, verdict

from server.identity.accounts import create_account
from server.identity.keys import generate_actor_keys
from server.identity.tokens import create_token, parse_scopes

TARGET_MS = 100.0


async def _user(node: BenchNode, name: str) -> str:
    keys = await asyncio.to_thread(generate_actor_keys)
    async with node.db.transaction() as conn:
        account = await create_account(conn, name, keys, node.federation.clock())
        scopes = parse_scopes("read write")
        return await create_token(conn, account.id, scopes, "bench", node.federation.clock())


async def _chat(http: aiohttp.ClientSession, node: BenchNode, token: str, acct: str) -> str:
    async with http.post(
        f"{node.base_url}/api/kith/v1/chats",
        json={"acct": [acct]},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        return (await response.json())["id"]


async def _latencies(
    http: aiohttp.ClientSession,
    sender: BenchNode,
    sender_token: str,
    chat_id: str,
    socket: aiohttp.ClientWebSocketResponse,
    count: int,
    rate: float,
) -> list[float]:
    """Milliseconds from sending each message to the listener hearing it."""
    heard: dict[str, float] = {}
    waiting: dict[str, asyncio.Future[float]] = {}

    async def listen() -> None:
        async for message in socket:
            event = json.loads(message.data)
            if event.get("event") != "kith:chat":
                continue
            last = json.loads(event["payload"]).get("last_message") or {}
            text = last.get("content", "")
            for marker, future in list(waiting.items()):
                if marker in text and not future.done():
                    future.set_result(time.perf_counter())

    listener = asyncio.create_task(listen())
    auth = {"Authorization": f"Bearer {sender_token}"}
    try:
        for n in range(count):
            marker = f"m{n}x{time.monotonic_ns()}"
            waiting[marker] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            async with http.post(
                f"{sender.base_url}/api/kith/v1/chats/{chat_id}/messages",
                json={"status": marker},
                headers=auth,
            ) as response:
                assert response.status == 200, await response.text()
            arrived = await asyncio.wait_for(waiting[marker], 10)
            del waiting[marker]
            heard[marker] = (arrived - started) * 1000
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
    finally:
        listener.cancel()
    return list(heard.values())


async def _slow_inbox(delay: float) -> tuple[web.AppRunner, str]:
    """A peer whose shared inbox answers after `delay` seconds: public fan-out to it is slow."""

    async def inbox(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/inbox", inbox)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/inbox"


async def _queue_fanout(node: BenchNode, token: str, inbox_url: str, followers: int) -> None:
    """Queue a public post's delivery to `followers` inboxes of a slow peer."""
    from federation.delivery import enqueue
    from federation.dispatch import PRIORITY_BULK, Outbound
    from server.storage.ids import new_id

    now = node.federation.clock()
    activity = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{node.base_url}/activities/bench-fanout-{time.monotonic_ns()}",
        "type": "Create",
        "actor": f"{node.base_url}/users/alice",
        "object": {"type": "Note", "content": "a public post"},
    }
    inboxes = tuple(f"{inbox_url}?follower={n}" for n in range(followers))
    async with node.db.transaction() as conn:
        await enqueue(
            conn,
            Outbound(activity, activity["actor"], (), PRIORITY_BULK, inboxes=inboxes),
            new_id,
            now,
        )
    node.federation.wakeups.delivery_queued()


async def one_run(args: argparse.Namespace) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as a_dir, tempfile.TemporaryDirectory() as b_dir:
        a = await start_node(Path(a_dir))
        b = await start_node(Path(b_dir))
        slow = None
        try:
            alice, bob, carol = (
                await _user(a, "alice"),
                await _user(b, "bob"),
                await _user(b, "carol"),
            )
            async with aiohttp.ClientSession() as http:
                bob_acct = f"bob@{b.config.domain}"
                remote_chat = await _chat(http, a, alice, bob_acct)
                local_chat = await _chat(http, b, carol, "bob")
                if args.fanout:
                    slow, inbox_url = await _slow_inbox(0.2)
                    await _queue_fanout(a, alice, inbox_url, args.fanout)
                async with http.ws_connect(
                    f"{b.base_url}/api/v1/streaming?stream=direct",
                    headers={"Authorization": f"Bearer {bob}"},
                ) as socket:
                    await asyncio.sleep(0.1)
                    across = await _latencies(
                        http, a, alice, remote_chat, socket, args.messages, args.rate
                    )
                    same = await _latencies(
                        http, b, carol, local_chat, socket, args.messages, args.rate
                    )
            return {"across": across, "same": same}
        finally:
            if slow is not None:
                await slow.cleanup()
            await a.stop()
            await b.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="messages a second")
    parser.add_argument("--fanout", type=int, default=0, help="slow public deliveries queued")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {"across": [], "same": []}
    for run in range(args.runs):
        found = asyncio.run(one_run(args))
        for kind, values in found.items():
            p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
            figures[kind].append((p50, p99))
            print(f"run {run + 1} {kind}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    labels = {
        "across": "A sends → B's client hears (two nodes)",
        "same": "sent → heard (one node)",
    }
    load = f", {args.fanout} slow public deliveries queued" if args.fanout else ""
    print(f"\nchat message → streaming client, {args.messages} messages at {args.rate:g}/s{load}")
    for kind, runs in figures.items():
        p50 = statistics.median(p for p, _ in runs)
        p99 = statistics.median(p for _, p in runs)
        met = verdict(p99, TARGET_MS, higher_is_better=False)
        print(f"  {labels[kind]}: p50 {p50:.1f} ms, p99 {p99:.1f} ms  {met}")


if __name__ == "__main__":
    main()
