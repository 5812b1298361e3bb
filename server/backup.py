"""Backups: one tar.gz with a consistent snapshot of the database, the config file in use and
the data directory's other files, listed with their SHA-256 in a manifest; and restoring one.

The archive, member by member (the manifest comes first, so `tar -xzOf ARCHIVE manifest.json`
is quick):

    manifest.json          format, Kith version, schema revision, database kind, files
    database/kith.db       SQLite: the online backup API's copy of the node's database
    database/kith.pgdump   PostgreSQL: `pg_dump --format=custom`
    config/config.toml     the config file the node ran with, if it had one
    files/…                every other regular file under the data directory

Actor and instance keys live in the database (table account_keys), so the database and the
config are the node's identity; `files/` carries whatever else an operator keeps there.

Everything here is blocking and runs in a worker thread; `server/cli_backup.py` speaks to the
operator.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy.engine import make_url

from server import __version__
from server.config import Config

FORMAT = "kith-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/kith.db"
POSTGRES_MEMBER = "database/kith.pgdump"
CONFIG_MEMBER = "config/config.toml"
FILES_PREFIX = "files/"
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
# 1,024 pages (4 MiB at SQLite's default page size) per backup step: progress every step.
PAGES_PER_STEP = 1024
_CHUNK = 1024 * 1024
_MANIFEST_MAX = 16 * 1024 * 1024
_PROGRESS_EVERY_S = 1.0
# Our own work in progress (staging folders, unfinished archives and restored files).
_TEMPORARY = re.compile(r"^\.kith-(backup|restore)-|\.kith-(backup|restore)-[0-9a-f]{8}$")

Say = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Entry:
    """One member of the archive besides the manifest."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What an archive holds, written first in it."""

    kith_version: str
    schema_revision: str
    database: str  # "sqlite" or "postgresql"
    created_at: str
    domain: str
    base_url: str
    data_dir: str
    files: tuple[Entry, ...]

    @property
    def database_member(self) -> str:
        return SQLITE_MEMBER if self.database == "sqlite" else POSTGRES_MEMBER

    @property
    def has_config(self) -> bool:
        return any(entry.path == CONFIG_MEMBER for entry in self.files)

    def data_files(self) -> list[Entry]:
        return [entry for entry in self.files if entry.path.startswith(FILES_PREFIX)]

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kith_version": self.kith_version,
            "schema_revision": self.schema_revision,
            "database": self.database,
            "created_at": self.created_at,
            "instance": {"domain": self.domain, "base_url": self.base_url},
            "data_dir": self.data_dir,
            "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.files],
        }
        return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest, or BackupError naming what is wrong with it."""
    try:
        document = json.loads(raw)
        if document.get("format") != FORMAT:
            raise BackupError("this is not a Kith backup (its manifest has another format)")
        if document.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"the backup's format version {document.get('format_version')!r} is not one "
                f"this Kith reads ({FORMAT_VERSION}): restore it with the release that made it"
            )
        files = tuple(
            Entry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in document["files"]
        )
        manifest = Manifest(
            kith_version=str(document["kith_version"]),
            schema_revision=str(document["schema_revision"]),
            database=str(document["database"]),
            created_at=str(document["created_at"]),
            domain=str(document["instance"]["domain"]),
            base_url=str(document["instance"]["base_url"]),
            data_dir=str(document["data_dir"]),
            files=files,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"the backup's manifest is damaged: {exc}") from None
    _check_entries(manifest)
    return manifest


def _check_entries(manifest: Manifest) -> None:
    if manifest.database not in ("sqlite", "postgresql"):
        raise BackupError(f"the manifest names an unknown database {manifest.database!r}")
    paths = [entry.path for entry in manifest.files]
    if len(set(paths)) != len(paths):
        raise BackupError("the manifest lists a file twice")
    if manifest.database_member not in paths:
        raise BackupError("the manifest lists no database")
    for entry in manifest.files:
        if entry.path not in (manifest.database_member, CONFIG_MEMBER) and not (
            entry.path.startswith(FILES_PREFIX) and _is_safe_relative(entry.path)
        ):
            raise BackupError(f"the manifest lists an unexpected path {entry.path!r}")
        if entry.size < 0 or not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
            raise BackupError(f"the manifest's entry for {entry.path} is damaged")


def _is_safe_relative(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        not path.startswith("/")
        and "\\" not in path
        and "\x00" not in path
        and len(parts) > 1
        and all(part not in ("", ".", "..") for part in parts)
    )


class Progress:
    """Prints "LABEL: N%" at most once a second while long work runs."""

    def __init__(self, say: Say, label: str, total: int) -> None:
        self.say = say
        self.label = label
        self.total = max(total, 1)
        self.last = time.monotonic()
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count
        self.update(self.done)

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= _PROGRESS_EVERY_S and done < self.total:
            self.last = now
            self.say(
                f"{self.label}: {100 * done // self.total}% ({mib(done)} of {mib(self.total)})"
            )


class _Counted:
    """A binary reader that reports how much has been read through it."""

    def __init__(self, handle: IO[bytes], on_read: Callable[[int], None]) -> None:
        self.handle = handle
        self.on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.on_read(len(data))
        return data


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- SQLite -----------------------------------------------------------------------------------


def sqlite_path(config: Config) -> Path:
    """The SQLite file the config points at."""
    return Path(make_url(config.database.url).database or "")


def snapshot_sqlite(
    source: Path,
    destination: Path,
    say: Say,
    pages: int = PAGES_PER_STEP,
    after_step: Callable[[], None] | None = None,
) -> str:
    """Copy a live SQLite database with the online backup API; return its schema revision.

    The source connection holds one read transaction across every step. Without it SQLite
    restarts the copy whenever another connection commits between two steps, so a busy node
    could keep a paged backup from ever finishing; with it (and WAL) the copy is the snapshot
    at the transaction's start and the node's writers carry on undisturbed. (A node always
    puts its database in WAL mode, where a reader never blocks a writer.)
    """
    if not source.is_file():
        raise BackupError(f"there is no database at {source}")
    reader = sqlite3.connect(source, isolation_level=None, timeout=30)
    try:
        reader.execute("BEGIN")
        revision = _revision(reader, source)
        total_pages = reader.execute("PRAGMA page_count").fetchone()[0]
        page_size = reader.execute("PRAGMA page_size").fetchone()[0]
        progress = Progress(say, "copying the database", total_pages * page_size)
        target = sqlite3.connect(destination)
        try:

            def step(_status: int, remaining: int, total: int) -> None:
                progress.update((total - remaining) * page_size)
                if after_step is not None:
                    after_step()

            reader.backup(target, pages=pages, progress=step)
            # A self-contained file: no WAL to carry, whatever mode the source was in.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
        reader.execute("COMMIT")
    finally:
        reader.close()
    return revision


def _revision(connection: sqlite3.Connection, source: Path) -> str:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source} is not a Kith database: {exc}") from None
    if row is None:
        raise BackupError(f"{source} has no schema revision: it is not a Kith database")
    return str(row[0])


# --- PostgreSQL -------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """A PostgreSQL client program: on PATH, else the newest under /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")

    def version(path: str) -> tuple[int, ...]:
        number = Path(path).parent.parent.name
        return tuple(int(part) for part in number.split(".") if part.isdigit())

    return max(candidates, key=version) if candidates else None


def libpq_environment(url: str) -> dict[str, str]:
    """Connection settings for pg_dump/pg_restore as libpq variables: the password travels in
    the environment, never on a command line that `ps` shows."""
    parsed = make_url(url)
    query = {
        key: value if isinstance(value, str) else value[0] for key, value in parsed.query.items()
    }
    env: dict[str, str] = {}
    for variable, value in (
        ("PGHOST", query.get("host") or parsed.host),
        ("PGPORT", query.get("port") or (str(parsed.port) if parsed.port else None)),
        ("PGUSER", query.get("user") or parsed.username),
        ("PGPASSWORD", query.get("password") or parsed.password),
        ("PGDATABASE", parsed.database),
    ):
        if value:
            env[variable] = str(value)
    ssl = query.get("sslmode") or query.get("ssl")
    if ssl:
        env["PGSSLMODE"] = {"true": "require", "1": "require", "false": "disable"}.get(
            ssl.lower(), ssl
        )
    return env


def manual_pg_dump(url: str) -> str:
    """The command an operator runs when pg_dump is not installed here (no password shown)."""
    env = libpq_environment(url)
    parts = []
    if "PGPASSWORD" in env:
        parts.append("PGPASSWORD='<the password in database.url>'")
    parts += ["pg_dump", "--format=custom", "--file=kith.pgdump"]
    for option, variable in (("--host", "PGHOST"), ("--port", "PGPORT"), ("--username", "PGUSER")):
        if variable in env:
            parts.append(f"{option}={env[variable]}")
    parts.append(env.get("PGDATABASE", "DBNAME"))
    return " ".join(parts)


INSTALL_HINT = (
    "install the PostgreSQL client programs, as new as your server or newer "
    "(Debian/Ubuntu: apt-get install postgresql-client; Fedora/RHEL: dnf install postgresql; "
    "macOS: brew install libpq)"
)


def dump_postgres(tool: str, url: str, destination: Path, say: Say) -> None:
    """`pg_dump --format=custom` of the configured database: its own consistent snapshot."""
    say("database: running pg_dump (a consistent snapshot; the node keeps running)")
    _run_postgres_tool([tool, "--format=custom", f"--file={destination}"], url, "pg_dump")


def restore_postgres(tool: str, url: str, dump: Path, say: Say) -> None:
    """`pg_restore` into the configured (empty) database, all or nothing."""
    say("database: running pg_restore")
    database = make_url(url).database or ""
    argv = [tool, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    _run_postgres_tool([*argv, f"--dbname={database}", str(dump)], url, "pg_restore")


def _run_postgres_tool(argv: list[str], url: str, name: str) -> None:
    env = {**os.environ, **libpq_environment(url)}
    # argv holds a tool found on PATH and paths of ours; the password is in env only.
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise BackupError(f"{name} failed: {detail}")


# --- Files ------------------------------------------------------------------------------------


def data_files(data_dir: Path, skip: set[Path], say: Say) -> list[tuple[str, Path]]:
    """(archive member, path) of every regular file under the data directory but `skip`."""
    skip = {path.resolve() for path in skip}
    found: list[tuple[str, Path]] = []
    if not data_dir.is_dir():
        return found
    for folder, directories, names in os.walk(data_dir):
        directories[:] = sorted(d for d in directories if not _TEMPORARY.search(d))
        for name in sorted(names):
            path = Path(folder) / name
            if _TEMPORARY.search(name):
                continue
            if path.is_symlink() or not path.is_file():
                say(f"skipped {path}: not a regular file")
                continue
            if path.resolve() in skip:
                continue
            found.append((FILES_PREFIX + path.relative_to(data_dir).as_posix(), path))
    return found


def sqlite_files(database: Path) -> set[Path]:
    """The database file and the journals SQLite keeps next to it."""
    return {database} | {database.with_name(database.name + suffix) for suffix in SQLITE_SIDECARS}


# --- Writing an archive -----------------------------------------------------------------------


@dataclass
class Staged:
    """The files going into an archive, each already copied where nothing changes it."""

    members: list[tuple[str, Path]] = field(default_factory=list)

    def add(self, member: str, path: Path) -> None:
        self.members.append((member, path))

    def entries(self) -> tuple[Entry, ...]:
        return tuple(Entry(m, p.stat().st_size, sha256_of(p)) for m, p in self.members)


def write_archive(target: Path, manifest: Manifest, staged: Staged, say: Say) -> int:
    """Write the tar.gz next to `target`, then link it into place: never a half-written or
    overwritten PATH. Returns its size."""
    temporary = target.with_name(f".{target.name}.kith-backup-{secrets.token_hex(4)}")
    total = sum(entry.size for entry in manifest.files)
    progress = Progress(say, "compressing", total)
    try:
        with _create(temporary) as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                _add(tar, MANIFEST, io.BytesIO(manifest.to_json()), len(manifest.to_json()))
                for member, path in staged.members:
                    with path.open("rb") as handle:
                        counted = _Counted(handle, progress.advance)
                        _add(tar, member, counted, path.stat().st_size)  # type: ignore[arg-type]
            raw.flush()
            os.fsync(raw.fileno())
        _link_into_place(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target.stat().st_size


def _add(tar: tarfile.TarFile, name: str, handle: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    tar.addfile(info, handle)


def _link_into_place(temporary: Path, target: Path) -> None:
    """Make `temporary` appear as `target` at once, failing if `target` exists meanwhile."""
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise BackupError(f"{target} exists: choose another path") from None
    except OSError:
        # A file system without hard links: the check and the rename are separate steps.
        if target.exists():
            raise BackupError(f"{target} exists: choose another path") from None
        os.replace(temporary, target)
    _fsync_directory(target.parent)


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform opens directories
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    manifest: Manifest
    seconds: float


def check_target(path: Path) -> Path:
    """The archive's absolute path; refuse an existing one or a missing directory."""
    target = path.expanduser().absolute()
    if target.exists() or target.is_symlink():
        raise BackupError(f"{target} exists: kith backup never overwrites; choose another path")
    if not target.parent.is_dir():
        raise BackupError(f"the directory {target.parent} does not exist")
    return target


def create_backup(
    config: Config,
    config_file: Path | None,
    target: Path,
    say: Say,
    now: datetime,
    postgres: tuple[str, str] | None = None,
) -> BackupResult:
    """Snapshot the database, stage the config and data files, write the archive.

    `postgres` is (pg_dump, schema revision) for a PostgreSQL node; None means SQLite.
    """
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=".kith-backup-", dir=target.parent))
    try:
        staged = Staged()
        skip: set[Path] = {target}
        if postgres is None:
            database = sqlite_path(config)
            revision = snapshot_sqlite(database, staging / "kith.db", say)
            staged.add(SQLITE_MEMBER, staging / "kith.db")
            skip |= sqlite_files(database)
        else:
            tool, revision = postgres
            dump_postgres(tool, config.database.url, staging / "kith.pgdump", say)
            staged.add(POSTGRES_MEMBER, staging / "kith.pgdump")
        if config_file is not None:
            shutil.copyfile(config_file, staging / "config.toml")
            staged.add(CONFIG_MEMBER, staging / "config.toml")
            skip.add(config_file.resolve())
        _stage_data_files(config.data_dir, staging / "files", skip, staged, say)
        staged.members.sort(key=_rank)  # the config first, the database last
        manifest = _manifest(config, revision, postgres is None, now, staged.entries())
        size = write_archive(target, manifest, staged, say)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BackupResult(target, size, manifest, time.monotonic() - started)


def _rank(member: tuple[str, Path]) -> int:
    name = member[0]
    return 0 if name == CONFIG_MEMBER else 1 if name.startswith(FILES_PREFIX) else 2


def _stage_data_files(
    data_dir: Path, folder: Path, skip: set[Path], staged: Staged, say: Say
) -> None:
    # Copied first so that what is hashed is exactly what is archived.
    for member, path in data_files(data_dir, skip, say):
        copy = folder / member[len(FILES_PREFIX) :]
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        staged.add(member, copy)


def _manifest(
    config: Config, revision: str, is_sqlite: bool, now: datetime, entries: tuple[Entry, ...]
) -> Manifest:
    return Manifest(
        kith_version=__version__,
        schema_revision=revision,
        database="sqlite" if is_sqlite else "postgresql",
        created_at=now.isoformat().replace("+00:00", "Z"),
        domain=config.domain,
        base_url=config.base_url,
        data_dir=str(config.data_dir),
        files=entries,
    )


# --- Reading an archive -----------------------------------------------------------------------


def _corrupt(archive: Path, problem: object) -> BackupError:
    return BackupError(f"{archive} is corrupt or truncated ({problem}); nothing was restored")


def _guard(archive: Path, read: Callable[..., Any], *args: Any) -> Any:
    """Run one read of the archive, turning any failure of the bytes into BackupError (and
    only those: a failure to write elsewhere keeps its own type)."""
    try:
        return read(*args)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise _corrupt(archive, exc) from None


def _members(
    archive: Path, say: Say | None, label: str = ""
) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    """The archive's members in order, each with its reader; once all are taken, the gzip
    stream is read to its end so that its CRC and length are checked too."""
    with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
        progress = Progress(say, label, archive.stat().st_size) if say else None
        tar = _guard(archive, tarfile.open, None, "r|", unzipped)
        while (member := _guard(archive, tar.next)) is not None:
            reader = tar.extractfile(member) if member.isfile() else None
            if reader is None:
                raise _corrupt(archive, f"{member.name!r} is not a regular file")
            if progress is not None:
                reader = _Counted(reader, lambda _read: progress.update(raw.tell()))
            yield member, reader  # type: ignore[misc]
        while _guard(archive, unzipped.read, _CHUNK):
            pass


def read_manifest(archive: Path) -> Manifest:
    """The manifest alone (the archive's first member)."""
    if not archive.is_file():
        raise BackupError(f"there is no file at {archive}")
    for member, reader in _members(archive, None):
        if member.name != MANIFEST:
            raise BackupError(f"{archive} does not start with a Kith backup manifest")
        if member.size > _MANIFEST_MAX:
            raise BackupError(f"{archive}'s manifest is implausibly large")
        return parse_manifest(_guard(archive, reader.read))
    raise BackupError(f"{archive} is empty")


def each_file(
    archive: Path, manifest: Manifest, say: Say, label: str
) -> Iterator[tuple[Entry, Iterator[bytes]]]:
    """Every member but the manifest with its entry and its bytes in chunks. Raises
    BackupError when a member is missing or unexpected, or its size or SHA-256 differs: the
    consumer must treat what it was given as unverified until the iteration ends."""
    expected = {entry.path: entry for entry in manifest.files}
    seen: set[str] = set()
    for index, (member, reader) in enumerate(_members(archive, say, label)):
        if index == 0:
            continue  # the manifest, already read
        entry = expected.get(member.name)
        if entry is None or member.name in seen or member.size != entry.size:
            raise _corrupt(archive, f"unexpected member {member.name!r}")
        seen.add(member.name)
        digest = hashlib.sha256()

        def chunks(reader: IO[bytes] = reader, digest: Any = digest) -> Iterator[bytes]:
            while chunk := _guard(archive, reader.read, _CHUNK):
                digest.update(chunk)
                yield chunk

        yield entry, chunks()
        for _ in chunks():  # whatever the consumer left unread still counts
            pass
        if digest.hexdigest() != entry.sha256:
            raise _corrupt(archive, f"{member.name} does not match its checksum")
    missing = sorted(set(expected) - seen)
    if missing:
        raise _corrupt(archive, f"missing {', '.join(missing)}")


def verify_archive(archive: Path, manifest: Manifest, say: Say) -> None:
    """Read every member and check it against the manifest, writing nothing."""
    for _entry, chunks in each_file(archive, manifest, say, "verifying"):
        for _ in chunks:
            pass


def describe(manifest: Manifest) -> str:
    """One line about an archive, for the operator."""
    kind = "SQLite" if manifest.database == "sqlite" else "PostgreSQL"
    return (
        f"{kind} database at schema revision {manifest.schema_revision}, "
        f"node {manifest.domain}, made {manifest.created_at} by Kith {manifest.kith_version}"
    )


# --- Restoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePlan:
    """Where each part of an archive goes, decided (and checked) before anything is written."""

    archive: Path
    manifest: Manifest
    config: Config  # the restored node's configuration
    config_file: Path | None  # the file it comes from: the one in use, or the one installed
    install_config: str | None  # the archive's config, pointed at the new data dir, to write

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def is_sqlite(self) -> bool:
        return self.config.database.url.startswith("sqlite")

    def destination(self, member: str) -> Path | None:
        """Where a member ends up; None for one only used on the way (PostgreSQL's dump, and
        a config not installed because another is in use)."""
        if member == SQLITE_MEMBER:
            return sqlite_path(self.config)
        if member.startswith(FILES_PREFIX):
            return self.data_dir / member[len(FILES_PREFIX) :]
        if member == CONFIG_MEMBER and self.install_config is not None:
            return self.config_file
        return None


def read_config_member(archive: Path, manifest: Manifest) -> str:
    """The archive's config file (written before the data files and the database, so this
    reads little), checked against its manifest entry."""
    (entry,) = [e for e in manifest.files if e.path == CONFIG_MEMBER]
    for member, reader in _members(archive, None):
        if member.name == CONFIG_MEMBER:
            raw = _guard(archive, reader.read, _MANIFEST_MAX + 1)
            if len(raw) != entry.size or hashlib.sha256(raw).hexdigest() != entry.sha256:
                raise _corrupt(archive, f"{CONFIG_MEMBER} does not match its checksum")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BackupError(f"{CONFIG_MEMBER} in the archive is not UTF-8 text") from None
    raise _corrupt(archive, f"missing {CONFIG_MEMBER}")


_SECTION = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_DATA_DIR_KEY = re.compile(r"^\s*data_dir\s*=")


def with_data_dir(text: str, data_dir: Path) -> str:
    """The config text with `storage.data_dir` set to `data_dir` (comments and all else kept).
    The caller loads the result to check it took."""
    line = f"data_dir = {json.dumps(str(data_dir), ensure_ascii=False)}\n"
    lines = text.splitlines(keepends=True)
    section, storage_at = "", None
    for index, current in enumerate(lines):
        header = _SECTION.match(current)
        if header:
            section = header.group(1)
            storage_at = index if section == "storage" else storage_at
        elif section == "storage" and _DATA_DIR_KEY.match(current):
            lines[index] = line
            return "".join(lines)
    if storage_at is not None:
        lines.insert(storage_at + 1, line)
        return "".join(lines)
    ending = "" if not lines or lines[-1].endswith("\n") else "\n"
    return "".join(lines) + ending + "\n[storage]\n" + line


def existing_targets(plan: RestorePlan) -> list[Path]:
    """What is already where the restore would write (it refuses to when any is)."""
    found = []
    if plan.is_sqlite:
        found += [p for p in sorted(sqlite_files(sqlite_path(plan.config))) if p.exists()]
    for entry in plan.manifest.files:
        destination = plan.destination(entry.path)
        if destination is None or entry.path == SQLITE_MEMBER:
            continue
        if destination.exists() or destination.is_symlink():
            found.append(destination)
        elif entry.path.startswith(FILES_PREFIX) and not destination.resolve().is_relative_to(
            plan.data_dir.resolve()
        ):
            raise BackupError(f"{entry.path} would land outside {plan.data_dir}")
    return found


@dataclass
class _Placed:
    """Files this restore wrote: kept when it succeeds, removed when it does not."""

    temporary: list[Path] = field(default_factory=list)
    final: list[Path] = field(default_factory=list)

    def temporary_for(self, final: Path) -> Path:
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = final.with_name(f".{final.name}.kith-restore-{secrets.token_hex(4)}")
        self.temporary.append(path)
        return path

    def place(self, temporary: Path, final: Path) -> None:
        try:
            os.link(temporary, final)
        except FileExistsError:
            raise BackupError(f"{final} appeared while restoring; nothing was restored") from None
        self.final.append(final)

    def undo(self) -> None:
        for path in self.final:
            path.unlink(missing_ok=True)

    def clean(self) -> None:
        for path in self.temporary:
            path.unlink(missing_ok=True)


def restore(plan: RestorePlan, say: Say, pg_restore: str | None) -> None:
    """Write every member (checked again as it is read), then put the files in place and, on
    PostgreSQL, load the dump; on any failure remove what this restore wrote."""
    created = not plan.data_dir.exists()
    plan.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    placed = _Placed()
    pending: list[tuple[Path, Path]] = []
    dump: Path | None = None
    try:
        for entry, chunks in each_file(plan.archive, plan.manifest, say, "restoring"):
            final = plan.destination(entry.path)
            if entry.path == POSTGRES_MEMBER:
                dump = placed.temporary_for(plan.data_dir / "kith.pgdump")
                _write(dump, chunks)
            elif final is not None and entry.path != CONFIG_MEMBER:
                temporary = placed.temporary_for(final)
                _write(temporary, chunks)
                pending.append((temporary, final))
        if plan.install_config is not None and plan.config_file is not None:
            temporary = placed.temporary_for(plan.config_file)
            _write(temporary, iter([plan.install_config.encode()]))
            pending.append((temporary, plan.config_file))
        for temporary, final in pending:
            placed.place(temporary, final)
        if dump is not None:
            assert pg_restore is not None, "checked before the restore began"
            restore_postgres(pg_restore, plan.config.database.url, dump, say)
        for folder in {final.parent for final in placed.final}:
            _fsync_directory(folder)
    except BaseException:
        placed.undo()
        placed.clean()
        if created:
            shutil.rmtree(plan.data_dir, ignore_errors=True)
        raise
    placed.clean()


def _create(path: Path) -> IO[bytes]:
    """A new file only its owner can read, from the start: it may hold private keys."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _write(path: Path, chunks: Iterator[bytes]) -> None:
    with _create(path) as out:
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
