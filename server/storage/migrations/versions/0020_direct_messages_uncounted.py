"""Direct messages no longer count in an account's statuses or its last post (as Mastodon):
a counter that moves when someone sends a private message tells the world they sent one.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

The status triggers of 0006 are replaced by ones that skip direct statuses, and the counters
are counted again from the rows.
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_LAST_SHOWN = (
    "(SELECT max(id) FROM statuses WHERE account_id = {row}.account_id AND visibility <> 'direct')"
)
_ADDED = (
    "INSERT INTO account_stats (account_id, statuses_count, followers_count, following_count,"
    " last_status_id) VALUES (NEW.account_id, 1, 0, 0, NEW.id)"
    " ON CONFLICT (account_id) DO UPDATE SET"
    " statuses_count = account_stats.statuses_count + 1,"
    " last_status_id = CASE WHEN account_stats.last_status_id IS NULL"
    " OR account_stats.last_status_id < NEW.id THEN NEW.id"
    " ELSE account_stats.last_status_id END"
)
_REMOVED = (
    "UPDATE account_stats SET statuses_count = statuses_count - 1,"  # noqa: S608
    f" last_status_id = {_LAST_SHOWN.format(row='OLD')}"
    " WHERE account_id = OLD.account_id"
)
_COUNT_AGAIN = (
    "UPDATE account_stats SET"
    " statuses_count = (SELECT count(*) FROM statuses"
    "  WHERE statuses.account_id = account_stats.account_id AND visibility <> 'direct'),"
    " last_status_id = (SELECT max(id) FROM statuses"
    "  WHERE statuses.account_id = account_stats.account_id AND visibility <> 'direct')"
)
# The removal trigger as 0006 made it (for the downgrade; the insertion is the same).
_REMOVED_BEFORE = (
    "UPDATE account_stats SET statuses_count = statuses_count - 1,"
    " last_status_id = (SELECT max(id) FROM statuses WHERE account_id = OLD.account_id)"
    " WHERE account_id = OLD.account_id"
)


def _replace(added_when: str | None, removed_when: str | None, removed: str) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, event, when, body in (
        ("account_stats_status_added", "INSERT", added_when, _ADDED),
        ("account_stats_status_removed", "DELETE", removed_when, removed),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON statuses" if postgres else ""))
        condition = f" WHEN ({when})" if when else ""
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n{body};\nRETURN NULL;\nEND\n$$"
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON statuses FOR EACH ROW{condition}"
                f" EXECUTE FUNCTION {name}()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON statuses FOR EACH ROW{condition}\n"
                f"BEGIN\n{body};\nEND"
            )


def upgrade() -> None:
    _replace("NEW.visibility <> 'direct'", "OLD.visibility <> 'direct'", _REMOVED)
    op.execute(_COUNT_AGAIN)


def downgrade() -> None:
    _replace(None, None, _REMOVED_BEFORE)
    op.execute(
        "UPDATE account_stats SET"
        " statuses_count = (SELECT count(*) FROM statuses"
        "  WHERE statuses.account_id = account_stats.account_id),"
        " last_status_id = (SELECT max(id) FROM statuses"
        "  WHERE statuses.account_id = account_stats.account_id)"
    )
