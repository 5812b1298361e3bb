"""Outbound delivery: the queue in the database, and the worker that signs and POSTs.

Mastodon's behaviour is the model: one POST per (shared) inbox, retries with jittered
polynomial backoff for about two days on 5xx/401/408/429 and network errors, an immediate
give-up on other 4xx, `Retry-After` honoured, hosts marked unavailable after failures on
seven distinct days and revived by any success or signed request from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import aiohttp
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.actors import inboxes_for
from federation.db import UnitOfWork, insert_ignoring_duplicates, upsert
from federation.dispatch import PRIORITY_BULK, Outbound
from federation.domains import DomainRules
from federation.fetch import FetchError, FetchPolicy, check_url, is_as2_media_type
from federation.observe import DELIVERY, Observe, ignore
from federation.tables import deliveries, hosts, utc
from protocol.as2 import host_of
from protocol.errors import ProtocolError
from protocol.httpsig import HttpRequest, PrivateKey, sign_cavage, sign_rfc9421
from protocol.jsonsafe import parse_json_document

log = logging.getLogger("kith.federation.delivery")

QUEUED, DELIVERED, FAILED = "queued", "delivered", "failed"
ATTEMPTS_MAX = 16  # with (n⁴ + 15) s and jitter: about two to three days
UNAVAILABLE_AFTER_DAYS = 7
RETRY_AFTER_MAX = timedelta(hours=6)
_RETRYABLE_4XX = frozenset({401, 408, 429})
# (key id, private key) of a local actor id, for an algorithm ("rsa" or "ed25519").
SigningKeys = Callable[[str, str], Awaitable[tuple[str, PrivateKey]]]
# RFC 9421 with the signer's Ed25519 key: for Kith's own exchanges with Kith nodes (an
# Ed25519 signature costs a twentieth of an RSA one).
ED25519_SCHEME = "ed25519"
# Takes the activities peers answered with: (the host that answered, the activity) each.
TakeAnswers = Callable[[list[tuple[str, dict[str, Any]]]], Awaitable[None]]
ANSWER_BYTES_MAX = 256 * 1024
QUESTIONS_PER_HOST_FACTOR = 4
BATCHES_IN_FLIGHT = 4  # of batches holding bulk deliveries; as many again of the others
# The share of the deliveries in flight that bulk (public fan-out) may never take: direct
# messages, payments and replies to a person always find a free slot, however big the fan-out.
RESERVED_SHARE = 4  # one in four
# Each host has a lane for each kind, with its own cap: a slow host's fan-out holds up
# neither a direct message to it nor a payment question.
_QUESTION, _PROMPT, _BULK = "question", "prompt", "bulk"


_DELIVERY_KEY = ("activity_id", "inbox_url")
_REDELIVER_COLUMNS = ("state", "attempts", "next_attempt_at")


async def enqueue(
    conn: AsyncConnection, outbound: Outbound, new_id: Callable[[datetime], int], now: datetime
) -> int:
    """Queue one delivery per distinct inbox (in the caller's transaction); returns how many."""
    targets = set(outbound.inboxes)
    targets.update((await inboxes_for(conn, outbound.recipients)).values())
    body = json.dumps(outbound.activity)
    activity_id = outbound.activity["id"]
    queued = 0
    for inbox in sorted(targets):
        row = {
            "id": new_id(now),
            "activity_id": activity_id,
            "inbox_url": inbox,
            "host": host_of(inbox),
            "signer_uri": outbound.signer_uri,
            "body": body,
            "priority": outbound.priority,
            "state": QUEUED,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "wants_answer": outbound.wants_answer,
        }
        if outbound.redeliver:
            await upsert(conn, deliveries, row, _DELIVERY_KEY, _REDELIVER_COLUMNS)
            queued += 1
        else:
            queued += await insert_ignoring_duplicates(conn, deliveries, row, _DELIVERY_KEY)
    return queued


def backoff(attempts: int) -> timedelta:
    """Mastodon's Sidekiq schedule: (n⁴ + 15) seconds plus up to 50% jitter."""
    base = attempts**4 + 15
    return timedelta(seconds=base * (1 + random.random() / 2))  # noqa: S311 - jitter, not secrecy


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST."""

    status: int | None
    error: str | None = None
    retry_after: timedelta | None = None
    answer: dict[str, Any] | None = None  # what the peer answered in the response, if asked

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def permanent(self) -> bool:
        return (
            self.status is not None
            and 400 <= self.status < 500
            and (self.status not in _RETRYABLE_4XX)
        )


@dataclass(frozen=True)
class _Job:
    id: int
    inbox_url: str
    host: str
    signer_uri: str
    body: bytes
    attempts: int
    wants_answer: bool = False
    priority: int = PRIORITY_BULK

    @property
    def lane(self) -> str:
        if self.wants_answer:
            return _QUESTION
        return _BULK if self.priority >= PRIORITY_BULK else _PROMPT


class _Outcome(NamedTuple):
    job: _Job
    attempt: Attempt
    final: bool = False  # give up now, whatever the attempt says


_FREE = contextlib.nullcontext()


class DeliveryWorker:
    """Drains the delivery queue with a global and a per-host concurrency cap."""

    def __init__(
        self,
        db: UnitOfWork,
        session: aiohttp.ClientSession,
        policy: FetchPolicy,
        signing_keys: SigningKeys,
        clock: Callable[[], datetime],
        concurrency: int = 32,
        per_host: int = 4,
        batch: int = 256,
        lock_for: timedelta = timedelta(minutes=2),
        take_answers: TakeAnswers | None = None,
        observe: Observe = ignore,
        domains: DomainRules | None = None,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.db = db
        self.wake = wake
        self.domains = domains or DomainRules()
        self.session = session
        self.observe = observe
        self.take_answers = take_answers
        self.policy = policy
        self.signing_keys = signing_keys
        self.clock = clock
        self.batch = batch
        self.lock_for = lock_for
        self._slots = asyncio.Semaphore(concurrency)
        self._bulk_slots = asyncio.Semaphore(max(1, concurrency - concurrency // RESERVED_SHARE))
        self._per_host = per_host
        self._host_slots: dict[tuple[str, str], asyncio.Semaphore] = {}
        # Batch slots, by whether the batch holds bulk deliveries.
        self._batches = {held: asyncio.Semaphore(BATCHES_IN_FLIGHT) for held in (True, False)}
        self._in_flight: set[asyncio.Task[None]] = set()

    async def deliver_due(self) -> int:
        """Claim a batch of due deliveries and attempt each; returns how many were attempted.
        The outcomes are written together, in one transaction."""
        jobs = await self._claim()
        if jobs:
            await self._process(jobs)
        return len(jobs)

    async def start_due(self) -> int:
        """Claim a batch and start attempting it in the background; returns how many were
        claimed (0 when nothing is due or every batch slot is taken: a finished batch sets
        `wake`). A batch still in flight (a slow host, answers being taken) does not hold up
        the next: deliveries queued meanwhile go out at once, up to BATCHES_IN_FLIGHT batches
        with bulk in them, and while those are all busy, batches of the others alone."""
        with_bulk = not self._batches[True].locked()
        if not with_bulk and self._batches[False].locked():
            return 0
        jobs = await self._claim(with_bulk)
        if not jobs:
            return 0
        # Only this loop acquires batch slots, so the ones seen free above still are (a batch
        # without bulk takes a bulk batch's slot when its own are all busy).
        holds_bulk = any(job.lane == _BULK for job in jobs) or self._batches[False].locked()
        await self._batches[holds_bulk].acquire()
        task = asyncio.create_task(self._process(jobs), name="delivery-batch")
        self._in_flight.add(task)
        task.add_done_callback(lambda done: self._batch_done(done, holds_bulk))
        return len(jobs)

    def _batch_done(self, task: asyncio.Task[None], holds_bulk: bool) -> None:
        self._in_flight.discard(task)
        self._batches[holds_bulk].release()
        if self.wake is not None:
            self.wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("a delivery batch failed", exc_info=task.exception())

    async def stop(self) -> None:
        """Cancel the batches in flight (their claims lapse; the deliveries stay queued)."""
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=10)

    async def _process(self, jobs: list[_Job]) -> None:
        states = await self._host_states({job.host for job in jobs})
        outcomes = await asyncio.gather(*(self._deliver(job, states[job.host]) for job in jobs))
        await self._record(outcomes)

    async def _claim(self, with_bulk: bool = True) -> list[_Job]:
        """Due deliveries, the most urgent first (bulk ones only if `with_bulk`), locked."""
        now = self.clock()
        query = (
            select(
                deliveries.c.id,
                deliveries.c.inbox_url,
                deliveries.c.host,
                deliveries.c.signer_uri,
                deliveries.c.body,
                deliveries.c.attempts,
                deliveries.c.wants_answer,
                deliveries.c.priority,
            )
            .where(
                deliveries.c.state == QUEUED,
                deliveries.c.next_attempt_at <= now,
                or_(deliveries.c.locked_until.is_(None), deliveries.c.locked_until < now),
            )
            .order_by(deliveries.c.priority, deliveries.c.next_attempt_at)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
        )
        if not with_bulk:
            query = query.where(deliveries.c.priority < PRIORITY_BULK)
        async with self.db.transaction() as conn:
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_([row.id for row in rows]))
                    .values(locked_until=now + self.lock_for)
                )
        return [
            _Job(
                r.id,
                r.inbox_url,
                r.host,
                r.signer_uri,
                r.body.encode(),
                r.attempts,
                r.wants_answer,
                r.priority,
            )
            for r in rows
        ]

    async def _deliver(self, job: _Job, host_state: tuple[str, bool]) -> _Outcome:
        """One attempt; an answer in the response is taken at once (while the rest of the
        batch is still in flight), not after the batch."""
        outcome = await self._attempt(job, host_state)
        if outcome.attempt.answer is not None and self.take_answers is not None:
            await self.take_answers([(job.host, outcome.attempt.answer)])
        return outcome

    async def _attempt(self, job: _Job, host_state: tuple[str, bool]) -> _Outcome:
        scheme, unavailable = host_state
        if unavailable:
            return _Outcome(job, Attempt(None, "the host is marked unavailable"), final=True)
        if self.domains.refuses_host(job.host):  # suspended (or not allowed) since it was queued
            return _Outcome(job, Attempt(None, "the domain is blocked"), final=True)
        # Questions to Kith nodes are small and answered at once: more of them may be in
        # flight to one host than bulk deliveries (the peer's group commit takes them together).
        per_host = (
            self._per_host * QUESTIONS_PER_HOST_FACTOR if job.wants_answer else self._per_host
        )
        host_slot = self._host_slots.setdefault((job.host, job.lane), asyncio.Semaphore(per_host))
        # The host's slot first: a delivery waiting for a busy host holds no slot of the
        # others'. Bulk never takes the last RESERVED_SHARE of the slots.
        async with host_slot, self._bulk_slots if job.lane == _BULK else _FREE, self._slots:
            if job.wants_answer:  # a question to a Kith node (an offer, a statement)
                attempt = await self._post(job, ED25519_SCHEME)
                if attempt.status not in (400, 401):
                    return _Outcome(job, attempt)
            attempt = await self._post(job, scheme)
            if attempt.status in (400, 401) and scheme == "cavage":
                # Double-knock: the peer may only take RFC 9421 signatures.
                retry = await self._post(job, "rfc9421")
                if retry.delivered:
                    await self._remember_scheme(job.host, "rfc9421")
                    attempt = retry
        return _Outcome(job, attempt)

    async def _post(self, job: _Job, scheme: str) -> Attempt:
        try:
            check_url(job.inbox_url, self.policy)
            algorithm = "ed25519" if scheme == ED25519_SCHEME else "rsa"
            key_id, private_key = await self.signing_keys(job.signer_uri, algorithm)
            headers = {"Content-Type": "application/activity+json", "Host": job.host}
            if job.wants_answer:
                headers["Prefer"] = "return=representation"
            request = HttpRequest("POST", job.inbox_url, headers, job.body)
            sign = sign_cavage if scheme == "cavage" else sign_rfc9421
            headers.update(sign(request, key_id, private_key, self.clock()))
            async with self.session.post(
                job.inbox_url, data=job.body, headers=headers, allow_redirects=False
            ) as response:
                body = await response.content.read(ANSWER_BYTES_MAX + 1)
                return Attempt(
                    response.status,
                    retry_after=_retry_after(response, self.clock()),
                    answer=_answer(response, body) if job.wants_answer else None,
                )
        except FetchError as exc:
            return Attempt(None, exc.reason) if exc.is_temporary else Attempt(400, exc.reason)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempt(None, type(exc).__name__)

    async def _host_states(self, host_names: set[str]) -> dict[str, tuple[str, bool]]:
        """Per host: the signature scheme it takes, and whether it is marked unavailable."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(hosts.c.host, hosts.c.signature_scheme, hosts.c.is_unavailable).where(
                    hosts.c.host.in_(sorted(host_names))
                )
            )
            known = {
                row.host: (row.signature_scheme or "cavage", row.is_unavailable) for row in rows
            }
        return {host: known.get(host, ("cavage", False)) for host in host_names}

    async def _remember_scheme(self, host: str, scheme: str) -> None:
        async with self.db.transaction() as conn:
            await _touch_host(conn, host)
            await conn.execute(
                update(hosts).where(hosts.c.host == host).values(signature_scheme=scheme)
            )

    async def _record(self, outcomes: list[_Outcome]) -> None:
        now = self.clock()
        succeeded, failed = set(), set()
        counted: list[str] = []  # reported once the transaction commits
        async with self.db.transaction() as conn:
            for job, attempt, final in outcomes:
                if attempt.delivered:
                    await _finish(conn, job, DELIVERED, attempt, now)
                    succeeded.add(job.host)
                    counted.append(DELIVERED)
                elif final:
                    await _finish(conn, job, FAILED, attempt, now)
                    counted.append("skipped")
                elif attempt.permanent or job.attempts + 1 >= ATTEMPTS_MAX:
                    await _finish(conn, job, FAILED, attempt, now)
                    failed.add(job.host)
                    counted.append(FAILED)
                else:
                    counted.append("retry")
                    delay = attempt.retry_after or backoff(job.attempts + 1)
                    await conn.execute(
                        update(deliveries)
                        .where(deliveries.c.id == job.id)
                        .values(
                            attempts=job.attempts + 1,
                            next_attempt_at=now + min(delay, RETRY_AFTER_MAX),
                            locked_until=None,
                            last_status=attempt.status,
                            last_error=attempt.error,
                        )
                    )
                    failed.add(job.host)
            # Once per host and batch: a host that answered any delivery is up.
            for host in sorted(succeeded):
                await record_host_success(conn, host, now)
            for host in sorted(failed - succeeded):
                await _record_host_failure(conn, host, now)
        for outcome in counted:
            self.observe(DELIVERY, (outcome,))
        for job, attempt, _ in outcomes:
            if not attempt.delivered:
                log.info(
                    "delivery attempt failed",
                    extra={
                        "inbox": job.inbox_url,
                        "status": attempt.status,
                        "error": attempt.error,
                    },
                )


_FINISH = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("delivery"))
    .values(locked_until=None)
    .execution_options(kith_direct=True)  # see server/storage/direct.py
)


async def _finish(
    conn: AsyncConnection, job: _Job, state: str, attempt: Attempt, now: datetime
) -> None:
    await conn.execute(
        _FINISH,
        {
            "delivery": job.id,
            "state": state,
            "attempts": job.attempts + 1,
            "finished_at": now,
            "last_status": attempt.status,
            "last_error": attempt.error,
        },
    )


async def _touch_host(conn: AsyncConnection, host: str) -> None:
    await insert_ignoring_duplicates(
        conn, hosts, {"host": host, "is_unavailable": False, "failure_days": 0}, keys=["host"]
    )


async def record_host_success(conn: AsyncConnection, host: str, now: datetime) -> None:
    """Any success (or a signed request from the host) makes it available again."""
    await upsert(
        conn,
        hosts,
        {
            "host": host,
            "is_unavailable": False,
            "failure_days": 0,
            "first_failure_at": None,
            "last_success_at": now,
        },
        keys=["host"],
    )


async def _record_host_failure(conn: AsyncConnection, host: str, now: datetime) -> None:
    """Count the distinct days a host failed; seven make it unavailable (Mastodon's rule)."""
    await _touch_host(conn, host)
    row = (
        await conn.execute(
            select(hosts.c.failure_days, hosts.c.last_failure_at, hosts.c.first_failure_at).where(
                hosts.c.host == host
            )
        )
    ).one()
    last = utc(row.last_failure_at)
    days = row.failure_days + 1 if last is None or last.date() != now.date() else row.failure_days
    await conn.execute(
        update(hosts)
        .where(hosts.c.host == host)
        .values(
            failure_days=days,
            last_failure_at=now,
            first_failure_at=utc(row.first_failure_at) or now,
            is_unavailable=days >= UNAVAILABLE_AFTER_DAYS,
        )
    )


def _answer(response: aiohttp.ClientResponse, body: bytes) -> dict[str, Any] | None:
    """The activity a peer answered with (200, AS2, within the size limit), if any."""
    if (
        response.status != 200
        or len(body) > ANSWER_BYTES_MAX
        or not is_as2_media_type(response.headers.get("Content-Type", ""))
    ):
        return None
    try:
        return parse_json_document(body)
    except ProtocolError as exc:
        log.info("a peer's answer is not an activity", extra={"error": str(exc)})
        return None


def _retry_after(response: aiohttp.ClientResponse, now: datetime) -> timedelta | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value.strip()))
    try:
        return max(parsedate_to_datetime(value) - now, timedelta(0))
    except (TypeError, ValueError):
        return None
