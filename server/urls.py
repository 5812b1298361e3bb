"""Every URL this node mints for its actors and documents, built in one place."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.identity.accounts import Account

INSTANCE_ACTOR_PATH = "/actor"


@dataclass(frozen=True)
class Urls:
    """URLs under the node's `base_url`; the actor paths follow DESIGN.md §6."""

    base_url: str
    domain: str

    @property
    def authority(self) -> str:
        """host[:port] of base_url, which may differ from the handle domain."""
        return urlsplit(self.base_url).netloc

    def actor_path(self, account: Account) -> str:
        return INSTANCE_ACTOR_PATH if account.is_instance_actor else f"/users/{account.username}"

    def actor(self, account: Account) -> str:
        """The actor id: ours for local accounts, the peer's for remote ones."""
        if account.uri:
            return account.uri
        return self.base_url + self.actor_path(account)

    def actor_collection(self, account: Account, name: str) -> str:
        """`inbox`, `outbox`, `followers`, `following`, `collections/featured`..."""
        return f"{self.actor(account)}/{name}"

    def profile(self, account: Account) -> str:
        if account.is_instance_actor:
            return f"{self.base_url}/about"
        return f"{self.base_url}/@{account.username}"

    def preferred_username(self, account: Account) -> str:
        """Mastodon names the instance actor after the domain; users by their name."""
        return self.domain if account.is_instance_actor else account.username

    def handle(self, account: Account) -> str:
        """`user@domain`, the WebFinger address without the acct: scheme (a remote
        account's on its own server)."""
        return f"{self.preferred_username(account)}@{account.domain or self.domain}"

    @property
    def shared_inbox(self) -> str:
        return f"{self.base_url}/inbox"

    @property
    def webfinger_template(self) -> str:
        return f"{self.base_url}/.well-known/webfinger?resource={{uri}}"

    @property
    def nodeinfo_template(self) -> str:
        return f"{self.base_url}/nodeinfo/{{version}}"

    def static(self, name: str) -> str:
        return f"{self.base_url}/static/{name}"

    def followers(self, account: Account) -> str | None:
        """The followers collection: ours, or the one a remote actor published."""
        if not account.is_local:
            return account.followers_url
        return self.actor_collection(account, "followers")

    def status(self, status_id: int) -> str:
        """A local status's id (its Note)."""
        return f"{self.base_url}/objects/{status_id}"

    def status_page(self, account: Account, status_id: int) -> str:
        return f"{self.base_url}/@{account.username}/{status_id}"

    def activity(self, activity_id: int) -> str:
        return f"{self.base_url}/activities/{activity_id}"

    def context(self, root_status_id: int) -> str:
        """A thread's FEP-7888 context, named after its first post."""
        return f"{self.base_url}/contexts/{root_status_id}"

    def chat_context(self, local: Account, other: Account) -> str:
        """The one thread of a local account's chat with another actor (a Pleroma
        ChatMessage names no thread): the same for each of their messages, naming neither."""
        pair = f"{self.actor(local)} {self.actor(other)}".encode()
        return f"{self.base_url}/contexts/chats/{hashlib.sha256(pair).hexdigest()[:32]}"

    def media(self, file_name: str) -> str:
        """An uploaded picture or its preview (never an ActivityPub document)."""
        return f"{self.base_url}/media/{file_name}"

    def tag(self, name: str) -> str:
        return f"{self.base_url}/tags/{name}"
