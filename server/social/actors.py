"""The actor documents of local accounts."""

from __future__ import annotations

import functools
import html
import json
import re
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncConnection

from protocol.actors import ActorDocument, render_actor
from server.identity.accounts import Account, public_keys
from server.media import CONTENT_TYPES
from server.social.text import plain_text_to_html
from server.urls import Urls


async def local_actor_document(conn: AsyncConnection, urls: Urls, account: Account) -> dict:
    """The AS2 document of a local actor (user or instance actor), with its public keys."""
    keys = await public_keys(conn, account.id)
    document = render_actor(
        replace(
            actor_document(account, keys.rsa_public_pem, keys.ed25519_public, urls),
            ed25519_keys=keys.ed25519_keys,
        )
    )
    if account.is_suspended:
        # Mastodon's minimal document for a suspended account: no profile, the keys kept (so
        # what it signed before still verifies), and `suspended` for servers that show it.
        document["suspended"] = True
    return document


def actor_document(
    account: Account, rsa_public_pem: str, ed25519_public: bytes, urls: Urls
) -> ActorDocument:
    """The facts of an actor document for a local account (a suspended one's without its
    profile)."""
    blank = account.is_suspended
    return ActorDocument(
        actor_id=urls.actor(account),
        actor_type=account.actor_type,
        preferred_username=urls.preferred_username(account),
        webfinger=urls.handle(account),
        inbox=urls.actor_collection(account, "inbox"),
        outbox=urls.actor_collection(account, "outbox"),
        followers=urls.actor_collection(account, "followers"),
        following=urls.actor_collection(account, "following"),
        featured=urls.actor_collection(account, "collections/featured"),
        featured_tags=urls.actor_collection(account, "collections/tags"),
        shared_inbox=urls.shared_inbox,
        profile_url=urls.profile(account),
        rsa_public_pem=rsa_public_pem,
        ed25519_public=ed25519_public,
        published=account.created_at,
        name="" if blank else account.display_name,
        summary_html="" if blank else plain_text_to_html(account.note),
        manually_approves_followers=account.is_locked,
        discoverable=account.is_discoverable and not blank,
        indexable=account.is_indexable and not blank,
        fields=()
        if blank
        else tuple((name, field_html(value)) for name, value in profile_fields(account)),
        also_known_as=tuple(json.loads(account.also_known_as or "[]")),
        moved_to=account.moved_to_uri,
        client_endpoints=()
        if account.is_instance_actor
        else (
            ("oauthAuthorizationEndpoint", f"{urls.base_url}/oauth/authorize"),
            ("oauthTokenEndpoint", f"{urls.base_url}/oauth/token"),
            ("proxyUrl", f"{urls.base_url}/api/kith/v1/proxy"),
        ),
        # Pleroma's chat messages arrive as direct messages (server/social/notes.py).
        accepts_chat_messages=not (account.is_instance_actor or blank),
        icon=None if blank else avatar_icon(account, urls),
    )


def avatar_icon(account: Account, urls: Urls) -> tuple[str, str] | None:
    """A local account's profile picture as the actor's `icon`: its URL and media type."""
    if not account.avatar_file:
        return None
    extension = account.avatar_file.rpartition(".")[2]
    return urls.media(account.avatar_file), CONTENT_TYPES.get(extension, "image/png")


def profile_fields(account: Account) -> list[tuple[str, str]]:
    """A local account's profile fields (name, value) as typed; remote accounts have none yet."""
    if not account.profile_fields:
        return []
    return [(str(name), str(value)) for name, value in json.loads(account.profile_fields)]


_URL = re.compile(r"https?://[^\s<>\"']+")


@functools.lru_cache(maxsize=4096)
def field_html(value: str) -> str:
    """A field's value as HTML: escaped, links made clickable (as Mastodon shows them)."""
    out, position = [], 0
    for match in _URL.finditer(value):
        url = match.group(0).rstrip(".,;:!?)")
        out.append(html.escape(value[position : match.start()]))
        href = html.escape(url)
        out.append(
            f'<a href="{href}" target="_blank" rel="nofollow noopener noreferrer me" '
            f'translate="no">{href}</a>'
        )
        position = match.start() + len(url)
    out.append(html.escape(value[position:]))
    return "".join(out)
