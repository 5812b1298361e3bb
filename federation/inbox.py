"""The inbox's request-time path: cheap checks, signature, origin, de-duplication, store, 202.

Nothing here applies an activity: a verified activity is written to `inbox_items` and a
worker (federation.worker) processes it later. Every refusal is logged with its reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from hashlib import blake2b
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite

from federation.db import UnitOfWork
from federation.domains import DomainRules
from federation.keys import KeyStore, KeyUnavailable, ResolvedKey
from federation.observe import INBOX_ACTIVITY, SIGNATURE_FAILURE, Observe, ignore
from federation.tables import hosts, inbox_items
from protocol.as2 import host_of, id_of, is_http_url
from protocol.errors import ProtocolError
from protocol.httpsig import (
    HttpRequest,
    ParsedSignature,
    SignatureError,
    check_policy,
    parse_signature,
    verify,
)
from protocol.jsonsafe import parse_json_document

log = logging.getLogger("kith.federation.inbox")
_ACCEPTED_MEDIA_TYPES = ("application/activity+json", "application/ld+json", "application/json")
# Activities whose embedded object must come from the actor's own origin (FEP-fe34).
_OWN_OBJECT_TYPES = frozenset({"Create", "Update"})
_RECENT_GENERATION = 25_000  # ids per generation: the last 25,000 to 50,000 are remembered
_BUSY_WITHIN_S = 0.1


class RecentIds:
    """The activity ids stored lately, as two generations of 64-bit digests: a full one is
    replaced by a new one, so memory stays flat (about 3 MiB for 50,000 ids, where a dict of
    the URLs took 10) once the window has filled. A digest collision (odds ~1e-10 at this
    size) would make a new activity look stored: the sender gets 202 and nothing is kept."""

    def __init__(self, generation: int) -> None:
        self._generation = generation
        self._current: set[int] = set()
        self._previous: set[int] = set()

    @staticmethod
    def _digest(activity_id: str) -> int:
        return int.from_bytes(blake2b(activity_id.encode(), digest_size=8).digest(), "big")

    def __contains__(self, activity_id: str) -> bool:
        digest = self._digest(activity_id)
        return digest in self._current or digest in self._previous

    def add(self, activity_id: str) -> None:
        self._current.add(self._digest(activity_id))
        if len(self._current) >= self._generation:
            self._previous, self._current = self._current, set()


@dataclass(frozen=True)
class InboxPolicy:
    """Limits on what the inbox takes in."""

    body_bytes_max: int = 1024 * 1024
    blocked_domains: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Receipt:
    """The answer to a peer: a status and, for refusals, a short reason."""

    status: int
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    answer: dict[str, Any] | None = None  # an activity answered in the response (200)


class Refused(Exception):
    """A request the inbox turns down, with the status to answer (and, for a signature it
    could not accept, which kind of failure: see federation.observe.SIGNATURE_FAILURE)."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: tuple[tuple[str, str], ...] = (),
        signature_failure: str = "",
    ) -> None:
        super().__init__(reason)
        self.receipt = Receipt(status, reason, headers)
        self.signature_failure = signature_failure


class _Seen:
    """What became of one POSTed activity, for the metrics (federation.observe)."""

    __slots__ = ("kind", "outcome", "reason")

    def __init__(self) -> None:
        self.kind, self.outcome, self.reason = "unknown", "stored", ""

    def labels(self) -> tuple[str, str, str]:
        return self.kind, self.outcome, self.reason


# Refusals by status, as the metrics name them.
_REFUSAL_CLASSES = {
    400: "invalid",
    401: "signature",
    403: "origin",
    413: "envelope",
    415: "envelope",
    503: "key_unreachable",
}


ACCEPTED = Receipt(202)
# Applies an activity while its sender waits and says what to answer; None: it cannot now
# (the activity is then stored and applied later, as any other).
AnswerNow = Callable[[dict[str, Any], str, datetime], Awaitable[Receipt | None]]


class Inbox:
    """Receives activities from peers (shared inbox and personal inboxes alike)."""

    def __init__(
        self,
        db: UnitOfWork,
        keys: KeyStore,
        policy: InboxPolicy,
        supports: Callable[[str], bool],
        new_id: Callable[[datetime], int],
        on_stored: Callable[[], None] = lambda: None,
        answer_now: AnswerNow | None = None,
        observe: Observe = ignore,
        domains: DomainRules | None = None,
    ) -> None:
        self.db = db
        self.domains = domains or DomainRules()
        self.keys = keys
        self.policy = policy
        self.supports = supports
        self.new_id = new_id
        self.on_stored = on_stored
        self.answer_now = answer_now
        self.observe = observe
        self._unsupported_seen: set[str] = set()
        self._recent = RecentIds(_RECENT_GENERATION)
        self.log = InboxLog(db)
        self._last_request_at = -1.0

    def is_busy(self) -> bool:
        """Whether peers are posting right now (a request came in within the last 100 ms)."""
        return time.monotonic() - self._last_request_at < _BUSY_WITHIN_S

    async def receive(self, request: HttpRequest, now: datetime) -> Receipt:
        """Check, verify and store one POSTed activity."""
        self._last_request_at = time.monotonic()
        seen = _Seen()
        try:
            receipt = await self._receive(request, now, seen)
        except Refused as refused:
            log.info(
                "inbox refused an activity",
                extra={"status": refused.receipt.status, "reason": refused.receipt.reason},
            )
            seen.outcome = "refused"
            seen.reason = _REFUSAL_CLASSES.get(refused.receipt.status, "invalid")
            if refused.signature_failure:
                self.observe(SIGNATURE_FAILURE, (refused.signature_failure,))
            receipt = refused.receipt
        self.observe(INBOX_ACTIVITY, seen.labels())
        return receipt

    async def _receive(self, request: HttpRequest, now: datetime, seen: _Seen) -> Receipt:
        _check_envelope(request, self.policy)
        signature = _parse_signature(request, now)
        activity = _parse_activity(request.body)
        activity_id, activity_type, actor_uri = _identify(activity)
        seen.kind = activity_type if self.supports(activity_type) else "other"
        if _is_blocked(
            actor_uri, signature.key_id, self.policy.blocked_domains
        ) or self.domains.refuses(actor_uri, signature.key_id):
            log.info("dropped an activity from a blocked domain", extra={"actor": actor_uri})
            seen.outcome, seen.reason = "dropped", "blocked"
            return ACCEPTED
        if not self.supports(activity_type):
            self._log_unsupported_once(activity_type)
            seen.outcome, seen.reason = "dropped", "unsupported"
            return ACCEPTED
        if self._already_stored(activity_id):
            seen.outcome = "duplicate"
            return ACCEPTED
        try:
            key = await self._verified_key(signature, activity, now)
        except _ActorGone:
            # Its server says the actor is gone (410): its self-Delete cannot be verified but
            # that answer confirms it, so apply it; anything else from it is dropped.
            if id_of(activity.get("object")) == actor_uri and activity_type == "Delete":
                await self._store(activity, activity_id, activity_type, actor_uri, "gone", now)
            else:
                seen.outcome, seen.reason = "dropped", "unverifiable"
            return ACCEPTED
        if key is None:
            seen.outcome, seen.reason = "dropped", "unverifiable"
            return ACCEPTED
        if key.owner_uri != actor_uri:
            raise Refused(
                401,
                "the request is signed by another actor than the activity's",
                signature_failure="signer",
            )
        _check_origins(activity, activity_id, activity_type, actor_uri)
        if self.answer_now is not None and _wants_answer(request):
            answered = await self.answer_now(activity, actor_uri, now)
            if answered is not None:
                seen.outcome, seen.reason = "answered", "rejected" if answered.status >= 400 else ""
                return answered
        await self._store(activity, activity_id, activity_type, actor_uri, key.key_id, now)
        return ACCEPTED

    def _already_stored(self, activity_id: str) -> bool:
        """Seen lately (memory only; the unique index catches the rest, after verification)."""
        return activity_id in self._recent

    def _remember(self, activity_id: str) -> None:
        self._recent.add(activity_id)

    async def _verified_key(
        self, signature: ParsedSignature, activity: dict[str, Any], now: datetime
    ) -> ResolvedKey | None:
        """The key that verifies the signature, trying a fresh copy once; None: drop quietly."""
        for refresh in (False, True):
            try:
                key = await self.keys.resolve(signature.key_id, refresh=refresh)
            except KeyUnavailable as exc:
                return _unavailable_key(exc, activity, refresh)
            try:
                verify(signature, key.public_key, now)
            except SignatureError as exc:
                if refresh:
                    raise Refused(401, f"signature: {exc}", signature_failure="mismatch") from None
                continue
            return key
        raise AssertionError("unreachable")

    async def _store(
        self,
        activity: dict[str, Any],
        activity_id: str,
        activity_type: str,
        actor_uri: str,
        key_id: str,
        now: datetime,
    ) -> None:
        await self.log.append(
            {
                "id": self.new_id(now),
                "activity_id": activity_id,
                "activity_type": activity_type,
                "actor_uri": actor_uri,
                "signer_key_id": key_id,
                "body": json.dumps(activity),
                "state": "queued",
                "attempts": 0,
                "received_at": now,
                "next_attempt_at": now,
            }
        )
        self._remember(activity_id)
        self.on_stored()

    def _log_unsupported_once(self, activity_type: str) -> None:
        if activity_type not in self._unsupported_seen and len(self._unsupported_seen) < 1000:
            self._unsupported_seen.add(activity_type)
            log.info("dropping activities of an unsupported type", extra={"type": activity_type})


class InboxLog:
    """Writes verified activities in groups: requests that arrive together share one commit.

    A durable commit costs a disk flush; under load, one flush for many activities is what
    lets the inbox answer quickly (group commit). Each request still waits for its own row to
    be on disk before it answers 202.
    """

    BATCH_MAX = 500

    def __init__(self, db: UnitOfWork) -> None:
        self.db = db
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, row: dict[str, Any]) -> None:
        """Store one inbox item (once per activity id) and return when it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="inbox-log")
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.BATCH_MAX]
            del self._pending[: self.BATCH_MAX]
            try:
                await self._write([row for row, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        async with self.db.transaction() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(inbox_items).on_conflict_do_nothing(
                index_elements=["activity_id"]
            )
            await conn.execute(statement, rows)
            # A signed request from a host proves it is up: deliver to it again (Mastodon).
            await conn.execute(
                update(hosts)
                .where(
                    hosts.c.host.in_({host_of(row["actor_uri"]) for row in rows}),
                    hosts.c.is_unavailable.is_(True),
                )
                .values(is_unavailable=False, failure_days=0, first_failure_at=None)
            )


def _check_envelope(request: HttpRequest, policy: InboxPolicy) -> None:
    media_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type not in _ACCEPTED_MEDIA_TYPES:
        raise Refused(415, "the inbox takes application/activity+json")
    if len(request.body) > policy.body_bytes_max:
        raise Refused(413, f"the body is larger than {policy.body_bytes_max} bytes")


def _wants_answer(request: HttpRequest) -> bool:
    """RFC 7240: the sender asks for the result in the response."""
    prefer = request.header("prefer") or ""
    preferences = (part.split(";", 1)[0].strip().lower() for part in prefer.split(","))
    return "return=representation" in preferences


def _parse_signature(request: HttpRequest, now: datetime) -> ParsedSignature:
    """Parse and check the signature's coverage and time window before any key fetch."""
    try:
        signature = parse_signature(request)
        check_policy(signature, now)
    except SignatureError as exc:
        raise Refused(401, f"signature: {exc}", signature_failure="malformed") from None
    return signature


def _parse_activity(body: bytes) -> dict[str, Any]:
    try:
        return parse_json_document(body)
    except ProtocolError as exc:
        raise Refused(400, str(exc)) from None


def _identify(activity: dict[str, Any]) -> tuple[str, str, str]:
    activity_id, activity_type = activity.get("id"), activity.get("type")
    actor_uri = id_of(activity.get("actor"))
    if not is_http_url(activity_id):
        raise Refused(400, "the activity has no id")
    if not isinstance(activity_type, str) or not activity_type or len(activity_type) > 64:
        raise Refused(400, "the activity has no type")
    if not is_http_url(actor_uri):
        raise Refused(400, "the activity has no actor")
    return activity_id, activity_type, actor_uri  # type: ignore[return-value]


def _is_blocked(actor_uri: str, key_id: str, blocked: frozenset[str]) -> bool:
    if not blocked:
        return False
    for url in (actor_uri, key_id):
        host = host_of(url).rsplit(":", 1)[0] if is_http_url(url) else ""
        if any(host == domain or host.endswith("." + domain) for domain in blocked):
            return True
    return False


class _ActorGone(Exception):
    """The signer's server answered 410 for its key."""


def _unavailable_key(
    exc: KeyUnavailable, activity: dict[str, Any], refreshed: bool
) -> ResolvedKey | None:
    """The checklist's rule for Deletes: a gone key (410) is accepted, an unknown one dropped."""
    if activity.get("type") == "Delete" and (exc.gone or exc.missing):
        log.info("a Delete whose key is gone or unknown", extra={"key": exc.key_id})
        if exc.gone:
            raise _ActorGone
        return None
    if exc.temporary:
        raise Refused(
            503,
            f"the signing key is unreachable: {exc.reason}",
            (("Retry-After", "60"),),
            signature_failure="key",
        )
    raise Refused(401, f"the signing key cannot be used: {exc.reason}", signature_failure="key")


def _check_origins(
    activity: dict[str, Any], activity_id: str, activity_type: str, actor_uri: str
) -> None:
    """FEP-fe34: an actor speaks only for its own origin."""
    actor_host = host_of(actor_uri)
    if host_of(activity_id) != actor_host:
        raise Refused(403, "the activity id is not on the actor's server")
    embedded = activity.get("object")
    if activity_type in _OWN_OBJECT_TYPES and isinstance(embedded, dict):
        object_id = embedded.get("id")
        if not is_http_url(object_id) or host_of(object_id) != actor_host:
            raise Refused(403, "the object is not on the actor's server")
        author = id_of(embedded.get("attributedTo"))
        if author is not None and author != actor_uri:
            raise Refused(403, "the object is attributed to someone else")
