"""What federation reports about its own work, for the operator's metrics.

Federation's components take an `observe` callable (default: `ignore`) and call it as things
happen, with an event name below and a tuple of label values; the server wires it to its
metrics registry (server/metrics.py), which counts them and serves them at `/metrics`.

Why a callable and not a registry module both packages import: federation must not import
server/, the only package below both is protocol/, which is pure, and a module-level registry
would be a global shared by every node in one process (tests run several). A callable keeps
federation ignorant of metrics altogether, costs one call on the hot path, and needs no new
package. Label values must come from small fixed sets (never a URL, a host or an actor):
every distinct tuple is a time series kept for the life of the process.
"""

from __future__ import annotations

from collections.abc import Callable

# (event, label values) -> None. Must be cheap and must not raise.
Observe = Callable[[str, tuple[str, ...]], None]

# An activity POSTed to an inbox: (activity type, outcome, reason). The type is one the node
# handles, "other" for the rest, "unknown" before it is read. Outcomes: stored, duplicate
# (seen lately; an older repeat is stored once by the unique index and counts as stored),
# answered (reason "" or "rejected"), dropped (reason blocked, unsupported, unverifiable) and
# refused (reason envelope, signature, invalid, origin, key_unreachable).
INBOX_ACTIVITY = "inbox_activity"
# A signature the inbox could not accept: (reason): malformed (unparsable, uncovered headers,
# outside the time window), mismatch (does not verify with the signer's key, even refreshed),
# key (the key cannot be fetched or used), signer (signed by another actor than the activity's).
SIGNATURE_FAILURE = "signature_failure"
# An inbox item the worker took: (activity type, outcome): done, rejected, retry, failed.
INBOX_ITEM = "inbox_item"
# One delivery attempt's result: (outcome): delivered, retry, failed, skipped (host unavailable).
DELIVERY = "delivery"
# One remote GET (with its redirects): (outcome): ok, refused (address or URL not allowed),
# timeout, network, http_4xx, http_5xx, invalid (type, size or body not acceptable).
FETCH = "fetch"


def ignore(event: str, labels: tuple[str, ...]) -> None:
    """The default: nobody is counting."""
