"""Which of a user's notifications they see: the one rule for the API and the web pages.

Not from accounts blocked either way or muted with their notifications, nor from silenced
accounts (themselves or by their domain) the user does not follow, as Mastodon filters them.
Read at listing time, so a block, mute or silence made afterwards hides earlier ones too, and
lifting it shows them again.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, select, union

from server.identity.accounts import Account
from server.moderation import not_limited_for
from server.storage.tables import accounts, blocks, mutes, notifications


def seen_by(me: Account) -> ColumnElement[bool]:
    """The condition on `notifications` rows for those `me` sees."""
    hidden = union(
        select(blocks.c.target_account_id).where(blocks.c.account_id == me.id),
        select(blocks.c.account_id).where(blocks.c.target_account_id == me.id),
        select(mutes.c.target_account_id).where(
            mutes.c.account_id == me.id, mutes.c.hide_notifications.is_(True)
        ),
        select(accounts.c.id).where(~not_limited_for(me)),
    )
    return and_(notifications.c.account_id == me.id, notifications.c.from_account_id.not_in(hidden))
