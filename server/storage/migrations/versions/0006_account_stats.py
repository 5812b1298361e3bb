"""Account counters kept by the database: statuses, followers, following, last post.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Counting an account's statuses on every render costs as many index entries as it has posts
(Mastodon keeps `account_stats` for the same reason). Triggers keep the counters exact on
every write path, cascades included, on SQLite and PostgreSQL alike; the upgrade fills them
from the rows already there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# What each trigger does, in SQL both databases take (PostgreSQL wraps it in a function).
_UPSERT = (
    "INSERT INTO account_stats (account_id, statuses_count, followers_count, following_count,"
    " last_status_id) VALUES ({account}, {statuses}, {followers}, {following}, {last})"
    " ON CONFLICT (account_id) DO UPDATE SET"
    " statuses_count = account_stats.statuses_count + {statuses},"
    " followers_count = account_stats.followers_count + {followers},"
    " following_count = account_stats.following_count + {following},"
    " last_status_id = {last_merge}"
)
_STATUS_ADDED = _UPSERT.format(
    account="NEW.account_id",
    statuses=1,
    followers=0,
    following=0,
    last="NEW.id",
    last_merge="CASE WHEN account_stats.last_status_id IS NULL"
    " OR account_stats.last_status_id < NEW.id THEN NEW.id"
    " ELSE account_stats.last_status_id END",
)
_STATUS_REMOVED = (
    "UPDATE account_stats SET statuses_count = statuses_count - 1,"
    " last_status_id = (SELECT max(id) FROM statuses WHERE account_id = OLD.account_id)"
    " WHERE account_id = OLD.account_id"
)


def _follow_added(row: str) -> list[str]:
    keep = "account_stats.last_status_id"
    return [
        _UPSERT.format(
            account=f"{row}.target_account_id",
            statuses=0,
            followers=1,
            following=0,
            last="NULL",
            last_merge=keep,
        ),
        _UPSERT.format(
            account=f"{row}.account_id",
            statuses=0,
            followers=0,
            following=1,
            last="NULL",
            last_merge=keep,
        ),
    ]


def _follow_removed(row: str) -> list[str]:
    # `row` is NEW or OLD (constants of this file, never input).
    return [
        f"UPDATE account_stats SET followers_count = followers_count - 1"  # noqa: S608
        f" WHERE account_id = {row}.target_account_id",
        f"UPDATE account_stats SET following_count = following_count - 1"  # noqa: S608
        f" WHERE account_id = {row}.account_id",
    ]


# (name, table, event, condition, statements)
_TRIGGERS = [
    ("account_stats_status_added", "statuses", "INSERT", None, [_STATUS_ADDED]),
    ("account_stats_status_removed", "statuses", "DELETE", None, [_STATUS_REMOVED]),
    (
        "account_stats_follow_added",
        "follows",
        "INSERT",
        "NEW.state = 'accepted'",
        _follow_added("NEW"),
    ),
    (
        "account_stats_follow_removed",
        "follows",
        "DELETE",
        "OLD.state = 'accepted'",
        _follow_removed("OLD"),
    ),
    # An update (a request accepted, a follow moved to a new account) undoes the old row's
    # counts and applies the new row's.
    (
        "account_stats_follow_left",
        "follows",
        "UPDATE",
        "OLD.state = 'accepted'",
        _follow_removed("OLD"),
    ),
    (
        "account_stats_follow_joined",
        "follows",
        "UPDATE",
        "NEW.state = 'accepted'",
        _follow_added("NEW"),
    ),
]

_BACKFILL = [
    "INSERT INTO account_stats (account_id, statuses_count, followers_count, following_count,"
    " last_status_id) SELECT id, 0, 0, 0, NULL FROM accounts",
    "UPDATE account_stats SET"
    " statuses_count = (SELECT count(*) FROM statuses"
    "  WHERE statuses.account_id = account_stats.account_id),"
    " last_status_id = (SELECT max(id) FROM statuses"
    "  WHERE statuses.account_id = account_stats.account_id),"
    " followers_count = (SELECT count(*) FROM follows"
    "  WHERE follows.target_account_id = account_stats.account_id"
    "  AND follows.state = 'accepted'),"
    " following_count = (SELECT count(*) FROM follows"
    "  WHERE follows.account_id = account_stats.account_id AND follows.state = 'accepted')",
]


def upgrade() -> None:
    # No foreign key: a cascade that deletes an account's statuses fires the triggers, which
    # must still find (or harmlessly miss) the account's row whatever order the cascade takes.
    op.create_table(
        "account_stats",
        sa.Column("account_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("statuses_count", sa.BigInteger(), nullable=False),
        sa.Column("followers_count", sa.BigInteger(), nullable=False),
        sa.Column("following_count", sa.BigInteger(), nullable=False),
        sa.Column("last_status_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_stats")),
    )
    for statement in _BACKFILL:
        op.execute(statement)
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, event, condition, statements in _TRIGGERS:
        for sql in _trigger_sql(name, table, event, condition, statements, postgres):
            op.execute(sql)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("account_stats")


def _trigger_sql(
    name: str,
    table: str,
    event: str,
    condition: str | None,
    statements: list[str],
    postgres: bool,
) -> list[str]:
    body = "".join(f"{statement};\n" for statement in statements)
    when = f" WHEN ({condition})" if condition else ""
    if not postgres:
        return [
            f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when}\nBEGIN\n{body}END"
        ]
    return [
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n{body}RETURN NULL;\nEND\n$$",
        f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when}"
        f" EXECUTE FUNCTION {name}()",
    ]
