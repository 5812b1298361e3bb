"""The node's server-to-server machinery, wired from its config: fetches, keys, inbox, workers.

Local actions run through `perform`, which commits the domain change and its deliveries in one
transaction and then wakes the delivery workers (of every process, server/wakeups.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import ActorDirectory
from federation.answers import Answers
from federation.delivery import DeliveryWorker, enqueue
from federation.dispatch import Dispatcher, Reject
from federation.domains import DomainRules
from federation.fetch import (
    AS2_ACCEPT,
    Fetcher,
    FetchError,
    FetchPolicy,
    create_session,
    is_as2_media_type,
)
from federation.inbox import Inbox, InboxPolicy
from federation.keys import KeyStore
from federation.observe import Observe, ignore
from federation.tables import utc
from federation.worker import InboxWorker, release_claims, run_loop, sweep_finished
from payments.settlement import ask_again_now
from payments.settlement import resend_is_due as settlement_due
from protocol.actors import RSA_KEY_FRAGMENT
from protocol.as2 import id_of
from protocol.httpsig import HttpRequest, PrivateKey, sign_cavage
from protocol.vocab import ACTOR_TYPES
from server import __version__
from server.clock import Clock
from server.config import Config
from server.identity.accounts import SIGNING_KEY_FRESH, Account, find_account, instance_actor
from server.moderation import guard_inbox, refused_domains
from server.paying import Payments
from server.peer_settling import PeerSettling
from server.social.chat_inbound import ChatInbox
from server.social.inbound import SocialInbox
from server.social.media import prune_orphan_files
from server.social.mutes import end_expired_mutes
from server.social.notes import NoteStore
from server.social.remote_accounts import (
    account_for_actor,
    known_account,
    upsert_remote_account,
)
from server.social.remote_media import RemoteMedia
from server.social.statuses import Status, status_by_id, status_by_uri
from server.storage.engine import Database
from server.storage.ids import new_id
from server.storage.tables import account_keys
from server.urls import Urls
from server.wakeups import Wakeups

log = logging.getLogger("kith.federation")
_LOCAL_STATUS_PAGE = re.compile(r"/@\w+/([0-9]{1,18})")
HANDLE_FRESH_FOR = timedelta(days=1)
ORPHAN_FILES_GRACE = timedelta(hours=1)
POST_TYPES = frozenset({"Note", "Article", "Page", "Question"})

Action = Callable[[AsyncConnection, datetime], Awaitable[Any]]


class Federation:
    """Everything that talks to other servers, for one node."""

    def __init__(
        self, config: Config, db: Database, urls: Urls, clock: Clock, observe: Observe = ignore
    ) -> None:
        self.db = db
        self.urls = urls
        self.clock = clock
        self.retention_days = config.federation.retention_days
        self.policy = FetchPolicy(
            allow_private_addresses=config.federation.allow_private_addresses,
            allow_http=urls.base_url.startswith("http://"),
            user_agent=f"Kith/{__version__} (+{urls.base_url})",
        )
        self.session = create_session(self.policy)
        self.config = config
        self.domains = DomainRules(*self._configured_rules())
        self.fetcher = Fetcher(
            self.session, self.policy, signer=self._sign_get, domains=self.domains, observe=observe
        )
        self.directory = ActorDirectory(db, self.fetcher, clock, new_id)
        self.keys = KeyStore(db, self.fetcher, self.directory)
        self.dispatcher = Dispatcher()
        self.media = RemoteMedia(db, self.fetcher, config.media, config.data_dir)
        SocialInbox(db, urls, self.directory, self.fetcher, self.media).register(self.dispatcher)
        ChatInbox(urls, self.directory).register(self.dispatcher)
        self.payments = Payments(config, db, urls, clock, self.directory)
        self.payments.register(self.dispatcher)
        PeerSettling(self.payments).register(self.dispatcher)
        guard_inbox(self.dispatcher, self.domains)
        self.inbox_wake = asyncio.Event()
        self.delivery_wake = asyncio.Event()
        self.wakeups = Wakeups(db, self.inbox_wake, self.delivery_wake)
        answers = Answers(
            db, self.dispatcher, clock, new_id, on_queued=self.wakeups.delivery_queued
        )
        self.inbox = Inbox(
            db,
            self.keys,
            InboxPolicy(
                body_bytes_max=config.federation.inbox_body_bytes_max,
                blocked_domains=frozenset(config.federation.blocked_domains),
            ),
            self.dispatcher.supports,
            new_id,
            on_stored=self.wakeups.inbox_stored,
            observe=observe,
            answer_now=answers.answer_now,
            domains=self.domains,
        )
        self.inbox_worker = InboxWorker(
            db, self.dispatcher, clock, new_id, inbox_is_busy=self.inbox.is_busy, observe=observe
        )
        self.delivery = DeliveryWorker(
            db,
            self.session,
            self.policy,
            self._signing_keys,
            clock,
            concurrency=config.federation.delivery_concurrency,
            per_host=config.federation.delivery_per_host,
            take_answers=answers.take_answers,
            domains=self.domains,
            observe=observe,
            wake=self.delivery_wake,
        )
        # (actor, algorithm) -> (reload after, (key id, key)).
        self._private_keys: dict[tuple[str, str], tuple[datetime, tuple[str, PrivateKey]]] = {}
        self._key_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []

    async def start(self, workers: bool = True) -> None:
        """Start the inbox and delivery workers (they wait out a database outage); without
        `workers` (`kith serve --role web`) only tell the worker processes of queued work."""
        self._tasks = [
            asyncio.create_task(self.wakeups.run(listen=workers), name="wakeups"),
            asyncio.create_task(  # every process: web ones run the inbox
                run_loop("moderation", self._refresh_rules, asyncio.Event(), idle_s=30),
                name="moderation",
            ),
        ]
        if workers:
            await self._resume_interrupted()
            self._tasks += self._start_workers()

    async def _resume_interrupted(self) -> None:
        try:
            if self.db.is_sqlite:  # this process owns the queues: claims left are a dead one's
                freed = await release_claims(self.db)
                if freed:
                    log.info("took back work claimed before a stop", extra={"items": freed})
            async with self.db.transaction() as conn:
                waiting = await ask_again_now(conn, self.clock())
            if waiting:
                log.info("asking again about unanswered payments", extra={"payments": waiting})
        except Exception:
            log.exception("could not resume interrupted work; the workers will")

    def _start_workers(self) -> list[asyncio.Task]:
        return [
            asyncio.create_task(
                run_loop("sweep", self._sweep, asyncio.Event(), idle_s=3600), name="sweep"
            ),
            asyncio.create_task(
                run_loop("expiry", self._expire, asyncio.Event(), idle_s=60), name="expiry"
            ),
            asyncio.create_task(
                run_loop("inbox", self._process_inbox, self.inbox_wake), name="inbox"
            ),
            asyncio.create_task(
                run_loop("delivery", self.delivery.start_due, self.delivery_wake),
                name="delivery",
            ),
            asyncio.create_task(
                run_loop("settlement", self._resend_offers, asyncio.Event(), idle_s=5),
                name="settlement",
            ),
        ]

    async def stop(self) -> None:
        """Stop the workers (waiting a little for a step in flight) and close connections."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                log.warning("a worker did not stop in time", extra={"task": task.get_name()})
        self._tasks = []
        await self.delivery.stop()
        await self.session.close()

    def _configured_rules(self) -> tuple[set[str], set[str] | None]:
        """Suspended domains from config; the allowlist (with this node) in allowlist mode."""
        federation = self.config.federation
        allowed = None
        if federation.mode == "allowlist":
            allowed = {*federation.allowed_domains, self.urls.domain}
        return set(federation.blocked_domains), allowed

    async def refresh_rules(self) -> None:
        """Reload the domain blocks and suspended actors the inbox, fetcher and delivery
        refuse (after a moderation action here; every 30 s for other processes' actions)."""
        async with self.db.read() as conn:
            domains, actors = await refused_domains(conn)
        suspended, allowed = self._configured_rules()
        self.domains.update(suspended | domains, allowed, actors)

    async def _refresh_rules(self) -> int:
        await self.refresh_rules()
        return 0  # then sleep 30 s

    async def moderate(self, action: Action) -> Any:
        """`perform` a moderation action (returning deliveries, or a result, or both), then
        apply its effect on federation at once."""

        async def run(conn: AsyncConnection, now: datetime) -> Any:
            returned = await action(conn, now)
            return returned if isinstance(returned, list | tuple) else (returned, [])

        result = await self.perform(run)
        await self.refresh_rules()
        return result

    async def _sweep(self) -> int:
        before = self.clock() - timedelta(days=self.retention_days)
        inbox, sent = await sweep_finished(self.db, before)
        if inbox or sent:
            log.info("swept finished work", extra={"inbox_items": inbox, "deliveries": sent})
        await self.sweep_media()
        return 0  # then sleep until the next hour

    async def sweep_media(self, grace: timedelta = ORPHAN_FILES_GRACE) -> int:
        """Delete the picture files no attachment names any more (deleted posts' and
        accounts', copies never recorded) once `grace` old: a newer one may belong to a row
        not committed yet. (Files are dated by the system clock, not the node's.)"""
        written_before = datetime.now(UTC) - grace
        removed = await prune_orphan_files(self.db, self.config.data_dir, written_before)
        if removed:
            log.info("deleted pictures of deleted posts", extra={"files": removed})
        return removed

    async def _expire(self) -> int:
        """End what was granted for a time (mutes with a duration, payment requests, money
        waiting to be accepted); propose the netting statements that are due."""
        async with self.db.transaction() as conn:
            ended = await end_expired_mutes(conn, self.clock())
            expired = await self.payments.expire(conn, self.clock())
        if ended:
            log.info("mutes expired", extra={"mutes": ended})
        if expired:
            log.info("payment requests expired", extra={"requests": expired})
        await self.perform(self.payments.return_untaken)
        await self.perform(self.payments.propose_due)
        return 0  # then sleep a minute

    async def _resend_offers(self) -> int:
        """Ask again about payments whose answer is overdue."""
        async with self.db.read() as conn:
            if not await settlement_due(conn, self.clock()):
                return 0
        return await self.perform(self.payments.resend)

    async def _process_inbox(self) -> int:
        processed = await self.inbox_worker.process_due()
        if processed:  # this process's delivery worker takes what they queued
            self.delivery_wake.set()
        return processed

    async def perform(self, action: Action) -> Any:
        """Run a local action in one transaction with its deliveries, then wake delivery.

        The action returns a list of Outbound, or a (result, list of Outbound) pair.
        """
        now = self.clock()
        async with self.db.transaction() as conn:
            returned = await action(conn, now)
            result, outbound = (None, returned) if isinstance(returned, list) else returned
            for item in outbound:
                await enqueue(conn, item, new_id, now)
        self.wakeups.delivery_queued()
        return result

    async def resolve_account(self, handle: str) -> Account:
        """`name` or `name@host` as an account: local, or remote via WebFinger (stored)."""
        name, _, host = handle.lstrip("@").partition("@")
        if not host or host.lower() == self.urls.domain:
            async with self.db.read() as conn:
                account = await find_account(conn, name)
            if account is None:
                raise LookupError(f"no account {handle}")
            return account
        async with self.db.read() as conn:
            known = await known_account(conn, self.urls, handle.lstrip("@"))
        fetched_at = known.fetched_at if known is not None else None
        if fetched_at is not None and self.clock() - utc(fetched_at) < HANDLE_FRESH_FOR:
            return known  # type: ignore[return-value]  # Mastodon re-resolves after a day too
        actor = await self.directory.resolve_handle(name, host)
        async with self.db.transaction() as conn:
            return await upsert_remote_account(conn, actor, self.clock())

    async def resolve_url(self, url: str) -> Account | Status | None:
        """What a pasted URL names (search with `resolve`): a known status or account, or a
        remote actor or post fetched now (a public post is stored, as Mastodon does)."""
        local = _LOCAL_STATUS_PAGE.fullmatch(url.removeprefix(self.urls.base_url))
        async with self.db.read() as conn:
            if url.startswith(self.urls.base_url + "/") and local:
                return await status_by_id(conn, int(local.group(1)))
            known = await status_by_uri(conn, url) or await account_for_actor(
                conn, url, self.urls.base_url
            )
        if known is not None or url.startswith(self.urls.base_url + "/"):
            return known
        document = await self._fetch_by_url(url)
        kind = document.get("type")
        if kind in ACTOR_TYPES:
            actor = await self.directory.get(document["id"])
            async with self.db.transaction() as conn:
                return await upsert_remote_account(conn, actor, self.clock())
        if kind not in POST_TYPES:
            return None
        actor = await self.directory.get(id_of(document.get("attributedTo")) or "")
        copies = await self.media.copies(document)
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                author = await upsert_remote_account(conn, actor, now)
                await NoteStore(self.urls).store(conn, author, document, now, copies=copies)
                return await status_by_uri(conn, document["id"])
        except Reject:
            return None

    async def _fetch_by_url(self, url: str) -> dict[str, Any]:
        """A remote object by its id or by a page URL that serves it under its real id."""
        try:
            return (await self.fetcher.get_object(url)).document
        except FetchError:
            fetched = await self.fetcher.get_json(url, AS2_ACCEPT, is_as2_media_type)
            real_id = fetched.document.get("id")
            if not isinstance(real_id, str) or real_id == url:
                raise
            return (await self.fetcher.get_object(real_id)).document

    async def _sign_get(self, method: str, url: str, headers: Any, body: bytes) -> dict[str, str]:
        """Sign a GET as the instance actor (authorized-fetch servers require it)."""
        key_id, private_key = await self._signing_keys(f"{self.urls.base_url}/actor")
        request = HttpRequest(method, url, dict(headers), body)
        return sign_cavage(request, key_id, private_key, self.clock())

    async def _signing_keys(self, actor_uri: str, algorithm: str = "rsa") -> tuple[str, PrivateKey]:
        """A local actor's private key (RSA, or its Ed25519 key), by its id; loaded again
        after SIGNING_KEY_FRESH, so that a key `kith user rotate-key` made signs soon."""
        cached = self._private_keys.get((actor_uri, algorithm))
        if cached is not None and self.clock() < cached[0]:
            return cached[1]
        async with self._key_lock:  # one load per key, however many deliveries ask at once
            cached = self._private_keys.get((actor_uri, algorithm))
            if cached is not None and self.clock() < cached[0]:
                return cached[1]
            found = await self._load_signing_key(actor_uri, algorithm)
            self._private_keys[(actor_uri, algorithm)] = (self.clock() + SIGNING_KEY_FRESH, found)
            return found

    async def _load_signing_key(self, actor_uri: str, algorithm: str) -> tuple[str, PrivateKey]:
        account = await self._local_actor(actor_uri)
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        account_keys.c.rsa_private_pem,
                        account_keys.c.ed25519_seed,
                        account_keys.c.ed25519_fragment,
                    ).where(account_keys.c.account_id == account.id)
                )
            ).one()
        if algorithm == "ed25519":
            key = Ed25519PrivateKey.from_private_bytes(bytes(row.ed25519_seed))
            return f"{actor_uri}#{row.ed25519_fragment}", key
        # Our own keys, generated here: skipping the RSA consistency check saves 35 ms a load.
        key = serialization.load_pem_private_key(
            row.rsa_private_pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
        return f"{actor_uri}#{RSA_KEY_FRAGMENT}", key  # type: ignore[return-value]

    async def _local_actor(self, actor_uri: str) -> Account:
        async with self.db.read() as conn:
            if actor_uri == f"{self.urls.base_url}/actor":
                account = await instance_actor(conn)
            else:
                account = await find_account(conn, actor_uri.rsplit("/", 1)[-1])
        if account is None or self.urls.actor(account) != actor_uri:
            raise LookupError(f"{actor_uri} is not a local actor")
        return account
