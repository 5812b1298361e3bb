"""Upgrading a node that has been in use: a database populated at the previous release's
schema head is migrated by `kith db upgrade`, and the node then serves what it held.

The rows are written with plain SQL as that release wrote them (not with today's table
definitions, which describe the new schema), on SQLite and PostgreSQL (a database of its own,
created and dropped by the test).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import LargeBinary, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from payments import ledger, peer_settlements, settlement
from server.cli import main
from server.config import DatabaseConfig
from server.identity.keys import ActorKeys, generate_actor_keys
from server.storage.engine import create_database
from server.storage.schema import head_revision, schema_state, upgrade
from server.storage.types import UTCDateTime
from tests.databases import DatabaseFactory
from tests.harness import NodeFactory

# The schema head of the previous release: move it forward when a release ships (and adapt
# the rows below to that head's tables, as that release wrote them).
PREVIOUS_RELEASE_HEAD = "0009"
DOMAIN = "social.example"
BASE = f"https://{DOMAIN}"
REMOTE = "https://remote.example"
THEN = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
TOKEN = "a-token-issued-by-the-previous-release"
# Ids as the previous release made them (time-sorted: milliseconds, then a sequence).
INSTANCE_ID, ALICE_ID, BOB_ID = (int(THEN.timestamp() * 1000) << 16 | n for n in (1, 2, 3))
POST_ID, REPLY_ID = (int((THEN + timedelta(hours=1)).timestamp() * 1000) << 16 | n for n in (1, 2))


def _row(table: str, **values: Any) -> tuple[Any, dict[str, Any]]:
    """INSERT INTO table (…) VALUES (…): timestamps and bytes bound as the release bound them."""
    columns, names = ", ".join(values), ", ".join(f":{key}" for key in values)
    statement = text(f"INSERT INTO {table} ({columns}) VALUES ({names})")  # noqa: S608 (ours)
    typed = [
        bindparam(key, type_=UTCDateTime() if isinstance(value, datetime) else LargeBinary())
        for key, value in values.items()
        if isinstance(value, datetime | bytes)
    ]
    return statement.bindparams(*typed), values


async def _insert(conn: AsyncConnection, table: str, **values: Any) -> None:
    statement, params = _row(table, **values)
    await conn.execute(statement, params)


def _account(account_id: int, username: str, **values: Any) -> dict[str, Any]:
    return {
        "id": account_id,
        "username": username,
        "username_key": username.lower(),
        "actor_type": "Person",
        "is_instance_actor": False,
        "display_name": "",
        "note": "",
        "is_locked": False,
        "is_discoverable": True,
        "is_indexable": False,
        "is_admin": False,
        "created_at": THEN,
        **values,
    }


async def _keys(conn: AsyncConnection, account_id: int, keys: ActorKeys) -> None:
    await _insert(
        conn,
        "account_keys",
        account_id=account_id,
        rsa_private_pem=keys.rsa_private_pem,
        rsa_public_pem=keys.rsa_public_pem,
        ed25519_seed=keys.ed25519_seed,
        ed25519_public=keys.ed25519_public,
        created_at=THEN,
    )


async def _populate_accounts(conn: AsyncConnection, keys: ActorKeys) -> None:
    instance = _account(INSTANCE_ID, "instance.actor", actor_type="Application")
    instance.update(is_instance_actor=True, is_locked=True, is_discoverable=False)
    await _insert(conn, "accounts", **instance)
    await _insert(conn, "accounts", **_account(ALICE_ID, "alice", display_name="Alice"))
    for account_id in (INSTANCE_ID, ALICE_ID):
        await _keys(conn, account_id, keys)
    bob = f"{REMOTE}/users/bob"
    await _insert(
        conn,
        "accounts",
        **_account(BOB_ID, "bob", domain="remote.example", uri=bob, url=f"{REMOTE}/@bob"),
        followers_url=f"{bob}/followers",
        fetched_at=THEN,
    )
    await _insert(
        conn,
        "remote_actors",
        id=BOB_ID,
        uri=bob,
        host="remote.example",
        inbox_url=f"{bob}/inbox",
        shared_inbox_url=f"{REMOTE}/inbox",
        document=json.dumps({"id": bob, "type": "Person"}),
        fetched_at=THEN,
    )
    await _insert(
        conn,
        "access_tokens",
        id=ALICE_ID + 100,
        account_id=ALICE_ID,
        token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(),
        scopes="read write follow push",
        name="kith token create",
        created_at=THEN,
    )


async def _populate_social(conn: AsyncConnection) -> None:
    for follow_id, (follower, followed) in enumerate(((BOB_ID, ALICE_ID), (ALICE_ID, BOB_ID))):
        await _insert(
            conn,
            "follows",
            id=POST_ID - 10 + follow_id,
            account_id=follower,
            target_account_id=followed,
            state="accepted",
            show_reblogs=True,
            notify=False,
            uri=f"{REMOTE}/follows/{follow_id}" if follower == BOB_ID else f"{BASE}/follows/1",
            created_at=THEN,
        )
    await _insert(
        conn,
        "statuses",
        id=POST_ID,
        uri=f"{BASE}/objects/{POST_ID}",
        url=f"{BASE}/@alice/{POST_ID}",
        account_id=ALICE_ID,
        content="<p>written before the upgrade</p>",
        text="written before the upgrade",
        spoiler_text="",
        sensitive=False,
        visibility="public",
        language="en",
        context_uri=f"{BASE}/contexts/{POST_ID}",
        created_at=THEN + timedelta(hours=1),
    )
    await _insert(
        conn,
        "statuses",
        id=REPLY_ID,
        uri=f"{REMOTE}/users/bob/statuses/1",
        url=f"{REMOTE}/@bob/1",
        account_id=BOB_ID,
        in_reply_to_id=POST_ID,
        in_reply_to_uri=f"{BASE}/objects/{POST_ID}",
        content="<p>a reply from afar</p>",
        text="",
        spoiler_text="",
        sensitive=False,
        visibility="public",
        context_uri=f"{BASE}/contexts/{POST_ID}",
        created_at=THEN + timedelta(hours=2),
    )
    await _insert(conn, "home_feed", account_id=ALICE_ID, status_id=POST_ID)
    await _insert(
        conn,
        "favourites",
        id=REPLY_ID + 1,
        account_id=BOB_ID,
        status_id=POST_ID,
        uri=f"{REMOTE}/likes/1",
        created_at=THEN,
    )
    await _insert(
        conn,
        "reports",
        id=REPLY_ID + 3,
        account_id=BOB_ID,
        target_account_id=ALICE_ID,
        status_uris=json.dumps([f"{BASE}/objects/{POST_ID}"]),
        comment="a report that arrived as a Flag",
        uri=f"{REMOTE}/flags/1",
        created_at=THEN,
    )
    await _insert(
        conn,
        "notifications",
        id=REPLY_ID + 2,
        account_id=ALICE_ID,
        from_account_id=BOB_ID,
        type="follow",
        created_at=THEN,
    )


async def _populate_federation(conn: AsyncConnection) -> None:
    for delivery_id, state in enumerate(("delivered", "queued"), start=1):
        await _insert(
            conn,
            "deliveries",
            id=POST_ID + delivery_id,
            activity_id=f"{BASE}/activities/{delivery_id}",
            inbox_url=f"{REMOTE}/inbox",
            host="remote.example",
            signer_uri=f"{BASE}/users/alice",
            body='{"type": "Create"}',
            priority=1,
            state=state,
            attempts=1 if state == "delivered" else 0,
            created_at=THEN,
            next_attempt_at=THEN,
            finished_at=THEN if state == "delivered" else None,
            last_status=202 if state == "delivered" else None,
        )
    await _insert(
        conn,
        "inbox_items",
        id=POST_ID + 5,
        activity_id=f"{REMOTE}/follows/0",
        activity_type="Follow",
        actor_uri=f"{REMOTE}/users/bob",
        signer_key_id=f"{REMOTE}/users/bob#main-key",
        body='{"type": "Follow"}',
        state="done",
        attempts=1,
        received_at=THEN,
        next_attempt_at=THEN,
        finished_at=THEN,
    )


async def _populate_ledger(conn: AsyncConnection) -> None:
    """100.00 EUR deposited for alice, 3.00 of it paid to a user of remote.example."""
    for account_id, owner, negative, totals in (
        (1, "external", True, (10000, 0)),
        (2, f"user:{ALICE_ID}", False, (300, 10000)),
        (3, "peer:remote.example", True, (0, 300)),
    ):
        await _insert(
            conn,
            "ledger_accounts",
            id=account_id,
            owner=owner,
            currency="EUR",
            may_go_negative=negative,
            debits_posted=totals[0],
            credits_posted=totals[1],
            debits_pending=0,
            credits_pending=0,
            created_at=THEN,
        )
    for serial, (debit, credit, amount, memo) in enumerate(
        ((1, 2, 10000, "deposit"), (2, 3, 300, "payment to bob@remote.example")), start=1
    ):
        await _insert(
            conn,
            "ledger_transfers",
            id=f"transfer-{serial}",
            serial=serial,
            kind="single",
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            currency="EUR",
            memo=memo,
            content_hash=hashlib.sha256(memo.encode()).hexdigest(),
            created_at=THEN,
        )
    await _insert(
        conn,
        "peer_limits",
        peer="remote.example",
        currency="EUR",
        credit_limit=50000,
        updated_at=THEN,
    )


_COUNTED = (
    "accounts",
    "account_keys",
    "access_tokens",
    "follows",
    "statuses",
    "favourites",
    "reports",
    "notifications",
    "deliveries",
    "inbox_items",
    "ledger_accounts",
    "ledger_transfers",
    "peer_limits",
)


async def _counts(conn: AsyncConnection) -> dict[str, int]:
    return {
        table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
        for table in _COUNTED
    }


def _write_config(directory: Path, database_url: str) -> Path:
    path = directory / "config.toml"
    path.write_text(
        f'[instance]\ndomain = "{DOMAIN}"\n\n[database]\nurl = "{database_url}"\n\n'
        f'[storage]\ndata_dir = "{directory / "data"}"\n',
        encoding="utf-8",
    )
    return path


async def test_a_database_populated_by_the_previous_release_upgrades_and_serves_its_data(
    databases: DatabaseFactory, nodes: NodeFactory, tmp_path: Path
) -> None:
    url = await databases.new("previous-release")
    db = create_database(url, DatabaseConfig(pool_size=2))
    keys = await asyncio.to_thread(generate_actor_keys)
    try:
        await upgrade(db, target=PREVIOUS_RELEASE_HEAD)
        async with db.transaction() as conn:
            await _populate_accounts(conn, keys)
            await _populate_social(conn)
            await _populate_federation(conn)
            await _populate_ledger(conn)
        async with db.read() as conn:
            before = await _counts(conn)
    finally:
        await db.dispose()

    # The operator's upgrade, as the README says: `kith db upgrade`.
    config = _write_config(tmp_path, url)
    upgraded = await asyncio.to_thread(main, ["db", "upgrade", "--config", str(config)])
    assert upgraded == 0

    db = create_database(url, DatabaseConfig(pool_size=2))
    try:
        state = await schema_state(db)
        assert state.current == head_revision()
        assert state.is_current
        async with db.read() as conn:
            assert await _counts(conn) == before
            await _check_rows(conn, keys)
            assert await ledger.audit(conn) == []
            assert await settlement.audit(conn) == []
            assert await peer_settlements.audit(conn) == []
    finally:
        await db.dispose()

    node = await nodes.start(database_url=url, instance__domain=DOMAIN, instance__base_url=BASE)
    await _check_served(f"http://127.0.0.1:{node.config.server.port}", node.http, keys)


async def _check_rows(conn: AsyncConnection, keys: ActorKeys) -> None:
    """What the migrations might have lost or changed (tables rebuilt on SQLite, columns
    added with defaults) is as it was written."""
    queued = (
        await conn.execute(
            text("SELECT state, attempts, wants_answer FROM deliveries WHERE id = :id"),
            {"id": POST_ID + 2},
        )
    ).one()
    assert (queued.state, queued.attempts, bool(queued.wants_answer)) == ("queued", 0, False)
    limit = (await conn.execute(text("SELECT credit_limit, transfer_max FROM peer_limits"))).one()
    assert (limit.credit_limit, limit.transfer_max) == (50000, None)
    stats = (
        await conn.execute(
            text(
                "SELECT statuses_count, followers_count, following_count FROM account_stats "
                "WHERE account_id = :id"
            ),
            {"id": ALICE_ID},
        )
    ).one()
    assert tuple(stats) == (1, 1, 1)
    pem = (
        await conn.execute(
            text("SELECT rsa_private_pem FROM account_keys WHERE account_id = :id"),
            {"id": ALICE_ID},
        )
    ).scalar_one()
    assert pem == keys.rsa_private_pem


async def _check_served(base: str, http: Any, keys: ActorKeys) -> None:
    """The node on the upgraded database serves alice: her actor, posts, wallet, token."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(
        f"{base}/users/alice", headers={"Accept": "application/activity+json"}
    ) as answer:
        assert answer.status == 200
        actor = await answer.json(content_type=None)
    assert actor["id"] == f"{BASE}/users/alice"
    assert actor["publicKey"]["publicKeyPem"] == keys.rsa_public_pem
    async with http.get(
        f"{base}/.well-known/webfinger", params={"resource": f"acct:alice@{DOMAIN}"}
    ) as answer:
        assert answer.status == 200
    async with http.get(f"{base}/api/v1/accounts/verify_credentials", headers=bearer) as answer:
        assert answer.status == 200, await answer.text()
        me = await answer.json()
    assert (me["id"], me["display_name"]) == (str(ALICE_ID), "Alice")
    assert (me["statuses_count"], me["followers_count"], me["following_count"]) == (1, 1, 1)
    async with http.get(f"{base}/api/v1/statuses/{POST_ID}/context", headers=bearer) as answer:
        assert answer.status == 200
        context = await answer.json()
    assert [reply["id"] for reply in context["descendants"]] == [str(REPLY_ID)]
    async with http.get(f"{base}/api/v1/timelines/home", headers=bearer) as answer:
        home = await answer.json()
    assert home[0]["content"] == "<p>written before the upgrade</p>"
    assert home[0]["favourites_count"] == 1
    async with http.get(f"{base}/api/v1/notifications", headers=bearer) as answer:
        notified = await answer.json()
    assert [(n["type"], n["account"]["acct"]) for n in notified] == [
        ("follow", "bob@remote.example")
    ]
    async with http.get(f"{base}/api/kith/v1/wallet", headers=bearer) as answer:
        wallet = await answer.json()
    assert [(b["currency"], b["balance"]) for b in wallet["balances"]] == [("EUR", "97.00")]
    async with http.post(
        f"{base}/api/v1/statuses", json={"status": "and after it"}, headers=bearer
    ) as answer:
        assert answer.status == 200, await answer.text()
