"""Where the database's schema stands against this release, and how to move it forward.

Alembic is driven programmatically on the node's own engine (`kith db upgrade`); there is no
alembic.ini to keep in step with the configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from server.storage.engine import Database


class SchemaError(RuntimeError):
    """The database cannot be used by this release as it is; the message says what to do."""


@dataclass(frozen=True)
class SchemaState:
    """The database's revision next to the newest one this release knows."""

    current: str | None
    head: str
    is_empty: bool
    is_known: bool
    pending: tuple[str, ...]

    @property
    def is_current(self) -> bool:
        return self.current == self.head


def target_metadata() -> list[MetaData]:
    """Every package's tables, for migrations and the schema-drift test."""
    from federation.tables import metadata as federation_metadata
    from payments.tables import metadata as payments_metadata
    from server.storage.tables import metadata as server_metadata

    return [server_metadata, federation_metadata, payments_metadata]


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    location = resources.files("server").joinpath("storage", "migrations")
    config.set_main_option("script_location", str(Path(str(location))))
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def _state(connection: Connection) -> SchemaState:
    script = _script()
    head = script.get_current_head()
    assert head is not None, "the migrations have no head"
    current = MigrationContext.configure(connection).get_current_revision()
    tables = inspect(connection).get_table_names()
    is_known = current is None or _is_known_revision(script, current)
    pending: tuple[str, ...] = ()
    if is_known:
        pending = tuple(
            f"{rev.revision} {rev.doc}"
            for rev in reversed(list(script.walk_revisions(current or "base", head)))
            if rev.revision != current
        )
    return SchemaState(
        current=current, head=head, is_empty=not tables, is_known=is_known, pending=pending
    )


def _is_known_revision(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several error types for an unknown id
        return False


def revision_is_known(revision: str) -> bool:
    """Whether `revision` is one of this release's migrations (a newer release's is not)."""
    return _is_known_revision(_script(), revision)


def head_revision() -> str:
    """The newest schema revision this release knows."""
    head = _script().get_current_head()
    assert head is not None, "the migrations have no head"
    return head


async def schema_state(db: Database) -> SchemaState:
    """Read the database's revision."""
    async with db.read() as conn:
        return await conn.run_sync(_state)


def check_usable(state: SchemaState) -> None:
    """Raise SchemaError unless the schema is exactly this release's."""
    if not state.is_known:
        raise SchemaError(
            f"the database schema is at revision {state.current}, which this Kith release does "
            "not know: it was written by a newer release. Run that release (or newer), or "
            "restore a backup made for this one."
        )
    if state.current is None and not state.is_empty:
        raise SchemaError(
            "the database has tables but no Kith schema revision: it is not a Kith database"
        )
    if not state.is_current:
        at = state.current or "empty"
        raise SchemaError(
            f"the database schema is at {at} and this release needs {state.head}: back it up, "
            "then run `kith db upgrade`"
        )


async def upgrade(
    db: Database, progress: Callable[[str], None] = lambda _: None, target: str = "head"
) -> SchemaState:
    """Apply pending migrations (up to `target`) in one transaction; refuse unknown schemas."""
    before = await schema_state(db)
    if not before.is_known:
        check_usable(before)
    if before.current is None and not before.is_empty:
        check_usable(before)
    for step in before.pending:
        progress(f"migrating: {step}")

    def _run(connection: Connection) -> None:
        config = _alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, target)

    async with db.transaction() as conn:
        await conn.run_sync(_run)
    return await schema_state(db)
