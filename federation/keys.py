"""Public keys of remote actors for verifying their requests: stored, cached parsed, refetched.

A key id resolves to exactly one owner. Mastodon's `…#main-key` fragments live in the actor
document; GoToSocial's `…/main-key` serves a stub whose `owner` we then fetch, and we trust
the key only as the owner's own document states it (FEP-fe34: the owner vouches for its key).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urldefrag

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from federation.actors import ActorDirectory, ActorUnavailable
from federation.db import UnitOfWork
from federation.fetch import AS2_ACCEPT, Fetcher, FetchError, is_as2_media_type
from federation.tables import remote_keys
from protocol.actors import RemoteActor
from protocol.as2 import as_list, id_of
from protocol.errors import InvalidKey
from protocol.httpsig import PublicKey, load_public_key_pem
from protocol.multibase import decode_ed25519_multikey

_PARSED_KEYS_MAX = 10_000


@dataclass(frozen=True)
class ResolvedKey:
    """A verified owner's public key, ready for `httpsig.verify`."""

    key_id: str
    owner_uri: str
    public_key: PublicKey
    pem: str = field(repr=False, default="")


class KeyUnavailable(Exception):
    """The key cannot be found or trusted; `gone` when the owner's server said 410."""

    def __init__(
        self,
        key_id: str,
        reason: str,
        gone: bool = False,
        temporary: bool = False,
        missing: bool = False,
    ) -> None:
        super().__init__(f"{key_id}: {reason}")
        self.key_id = key_id
        self.reason = reason
        self.gone = gone
        self.temporary = temporary
        self.missing = missing


class KeyStore:
    """Resolves signature key ids to owners and parsed public keys."""

    def __init__(self, db: UnitOfWork, fetcher: Fetcher, actors: ActorDirectory) -> None:
        self.db = db
        self.fetcher = fetcher
        self.actors = actors
        # Parsing a PEM costs a third of a verification, a database read more: keep resolved
        # keys in memory (bounded LRU). A verification failure refreshes from the owner.
        self._parsed: OrderedDict[str, ResolvedKey] = OrderedDict()

    async def resolve(self, key_id: str, refresh: bool = False) -> ResolvedKey:
        """The key, from the database unless `refresh` (then from its owner's server)."""
        if not refresh and key_id in self._parsed:
            self._parsed.move_to_end(key_id)
            return self._parsed[key_id]
        if not refresh:
            async with self.db.read() as conn:
                row = (
                    await conn.execute(
                        select(
                            remote_keys.c.owner_uri,
                            remote_keys.c.algorithm,
                            remote_keys.c.public_key,
                        ).where(remote_keys.c.key_id == key_id)
                    )
                ).first()
            if row is not None:
                return self._resolved(key_id, row.owner_uri, row.algorithm, row.public_key)
        owner = await self._fetch_owner(key_id)
        for key in owner.keys:
            if key.key_id == key_id:
                return self._resolved(key_id, owner.actor_id, key.algorithm, key.public_key)
        raise KeyUnavailable(key_id, "the owner's document does not publish this key")

    async def _fetch_owner(self, key_id: str) -> RemoteActor:
        url = urldefrag(key_id).url
        try:
            if url != key_id:  # a fragment: the document is the owner itself
                return await self.actors.fetch(url)
            stub = await self.fetcher.get_json(
                url, accept=AS2_ACCEPT, media_types=is_as2_media_type
            )
            owner_uri = _owner_named_by(stub.document, key_id)
            if owner_uri is None:
                raise KeyUnavailable(key_id, "the key document names no owner")
            return await self.actors.fetch(owner_uri)
        except ActorUnavailable as exc:
            raise KeyUnavailable(key_id, exc.reason, exc.gone, exc.temporary, exc.missing) from None
        except FetchError as exc:
            raise KeyUnavailable(
                key_id, exc.reason, exc.is_gone, exc.is_temporary, exc.is_not_found
            ) from None

    def _resolved(self, key_id: str, owner_uri: str, algorithm: str, pem: str) -> ResolvedKey:
        """`pem`: an RSA key's SPKI PEM, or an Ed25519 key's multibase value (FEP-521a, from
        the owner's `assertionMethod`: RFC 9421 `ed25519` signatures use it)."""
        cached = self._parsed.get(key_id)
        if cached is not None and cached.owner_uri == owner_uri and cached.pem == pem:
            return cached
        try:
            parsed = (
                Ed25519PublicKey.from_public_bytes(decode_ed25519_multikey(pem))
                if algorithm == "ed25519"
                else load_public_key_pem(pem)
            )
        except (InvalidKey, ValueError) as exc:
            raise KeyUnavailable(key_id, f"unusable key: {exc}") from None
        resolved = ResolvedKey(key_id=key_id, owner_uri=owner_uri, public_key=parsed, pem=pem)
        self._parsed[key_id] = resolved
        if len(self._parsed) > _PARSED_KEYS_MAX:
            self._parsed.popitem(last=False)
        return resolved


def _owner_named_by(document: dict, key_id: str) -> str | None:
    """The `owner` of key `key_id` in a key document or an actor stub that embeds it."""
    if document.get("id") == key_id:
        return id_of(document.get("owner"))
    for key in as_list(document.get("publicKey")):
        if isinstance(key, dict) and key.get("id") == key_id:
            return id_of(key.get("owner"))
    return None
