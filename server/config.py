"""Node configuration: TOML file, then KITH_SECTION__KEY environment overrides, validated once.

The result is a frozen `Config` value handed to everything that needs it; nothing reads the
environment or a file after start-up. The documentation of every key lives here, next to its
default, and `config.example.toml` is rendered from it (a test keeps the two identical).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from payments.money import Currencies
from protocol.errors import InvalidResource
from protocol.webfinger import normalize_host

ENV_PREFIX = "KITH_"
CONFIG_ENV = "KITH_CONFIG"
DEFAULT_DATA_DIR = "kith-data"
CONFIG_FILE_NAME = "config.toml"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """A configuration problem, naming the key (and the variable or file it came from)."""

    def __init__(self, key: str, problem: str, origin: str = "") -> None:
        self.key = key
        self.problem = problem
        where = f" ({origin})" if origin else ""
        super().__init__(f"{key}{where}: {problem}")


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class InstanceConfig:
    domain: str = field(
        default="",
        metadata=_doc(
            "The public name of this node, as in @alice@DOMAIN. It is part of every actor id and\n"
            "cannot change once the node has federated. Empty means localhost:PORT, for\n"
            "development only."
        ),
    )
    base_url: str = field(
        default="",
        metadata=_doc(
            "The URL peers and clients use to reach this node (scheme, host, optional port, no\n"
            "path). Empty means https://DOMAIN, or http://DOMAIN for localhost and loopback."
        ),
    )
    name: str = field(default="Kith", metadata=_doc("The node's name, shown to people and peers."))
    description: str = field(
        default="A Kith community server.",
        metadata=_doc("One or two sentences about this community."),
    )
    registrations: str = field(
        default="closed",
        metadata=_doc(
            'Who may sign up through apps (POST /api/v1/accounts): "open" (anyone),\n'
            '"approval" (anyone may ask; an admin approves with `kith admin approve NAME` or\n'
            'the admin API), "invite" (only with a code from `kith invite create`) or\n'
            '"closed" (nobody: accounts come from `kith user create`). A valid invite admits\n'
            'its holder in every mode but "closed", without approval. (The former key\n'
            'open_registrations = true|false is still read as "open"|"closed".)'
        ),
    )
    registrations_message: str = field(
        default="",
        metadata=_doc(
            "Shown to people in apps when sign-ups are closed or invite-only, e.g. where to\n"
            "ask for an invite (the instance's registrations.message)."
        ),
    )
    require_email: bool = field(
        default=False,
        metadata=_doc(
            "Whether a sign-up must give an email address. An address is only used for\n"
            "password resets, which need [smtp]; without it people ask the operator."
        ),
    )
    require_reason: bool = field(
        default=False,
        metadata=_doc('In "approval" mode, whether a sign-up must say why it wants to join.'),
    )


@dataclass(frozen=True)
class ServerConfig:
    host: str = field(
        default="127.0.0.1",
        metadata=_doc("The address to listen on. Put a TLS-terminating reverse proxy in front."),
    )
    port: int = field(default=8080, metadata=_doc("The TCP port to listen on."))


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = field(
        default=DEFAULT_DATA_DIR,
        metadata=_doc(
            "Where the node keeps its SQLite database and files. A relative path is taken from\n"
            "the directory holding this file (from the working directory when there is no file)."
        ),
    )


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = field(
        default="",
        metadata=_doc(
            "SQLAlchemy URL of the database. Empty means SQLite at DATA_DIR/kith.db.\n"
            'PostgreSQL: "postgresql+asyncpg://USER:PASSWORD@HOST:5432/DBNAME".'
        ),
    )
    pool_size: int = field(
        default=10, metadata=_doc("PostgreSQL: connections this process keeps open.")
    )
    busy_timeout_ms: int = field(
        default=5000,
        metadata=_doc("SQLite: how long a writer waits for another writer before failing."),
    )
    statement_timeout_ms: int = field(
        default=10000,
        metadata=_doc("Longest a single query may run before it is cancelled (0: no limit)."),
    )


@dataclass(frozen=True)
class FederationConfig:
    allow_private_addresses: bool = field(
        default=False,
        metadata=_doc(
            "Fetch from and deliver to loopback and private addresses. Leave false in\n"
            "production: remote input must not make this node reach into your network."
        ),
    )
    blocked_domains: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Domains (and their subdomains) whose activities are dropped unread, before any\n"
            'fetch. Example: ["spam.example", "bad.example"].'
        ),
    )
    mode: str = field(
        default="open",
        metadata=_doc(
            '"open": federate with every domain not suspended; "allowlist" (limited\n'
            "federation): only with the domains in allowed_domains (and their subdomains)."
        ),
    )
    allowed_domains: tuple[str, ...] = field(
        default=(),
        metadata=_doc("In allowlist mode, the only domains this node federates with."),
    )
    inbox_body_bytes_max: int = field(
        default=1024 * 1024,
        metadata=_doc("Largest activity the inbox accepts, in bytes (Mastodon's limit: 1 MiB)."),
    )
    delivery_concurrency: int = field(
        default=32, metadata=_doc("Deliveries in flight at once, over all hosts.")
    )
    delivery_per_host: int = field(
        default=4, metadata=_doc("Deliveries in flight at once to any one host.")
    )
    retention_days: int = field(
        default=7,
        metadata=_doc(
            "Days to keep processed inbox activities and finished deliveries (for operators'\n"
            "inspection) before they are deleted."
        ),
    )


@dataclass(frozen=True)
class ApiConfig:
    password_grant: bool = field(
        default=True,
        metadata=_doc(
            "Let apps sign in by sending a username and password to /oauth/token (OAuth's\n"
            "password grant, which many Mastodon apps use). Set false to allow only the\n"
            "browser consent flow."
        ),
    )
    login_attempts_per_window: int = field(
        default=10,
        metadata=_doc("Failed sign-ins allowed per address and per account every 5 minutes."),
    )
    requests_per_window: int = field(
        default=300,
        metadata=_doc(
            "Client API requests allowed per access token in each window (Mastodon: 300\n"
            "per 5 minutes). Answers carry X-RateLimit-* headers; over the limit, 429."
        ),
    )
    anonymous_requests_per_window: int = field(
        default=7500,
        metadata=_doc(
            "Client API requests without a token allowed per IP address per window (Mastodon:\n"
            "7500 per 5 minutes). Requests refused for a bad token count here too."
        ),
    )
    rate_limit_window_seconds: int = field(
        default=300, metadata=_doc("The length of a rate-limit window, in seconds.")
    )
    sign_up_attempts_per_window: int = field(
        default=25,
        metadata=_doc(
            "Sign-ups (POST /api/v1/accounts) and password reset requests allowed per IP\n"
            "address in each window, each counted apart (Mastodon: 25 per 5 minutes)."
        ),
    )
    posts_per_window: int = field(
        default=300,
        metadata=_doc(
            "Posts (POST /api/v1/statuses) and ActivityPub C2S outbox activities allowed per\n"
            "access token in each posting window (Mastodon: 300 statuses per 3 hours)."
        ),
    )
    posts_window_seconds: int = field(
        default=3 * 3600, metadata=_doc("The length of a posting window, in seconds.")
    )
    trusted_proxies: tuple[str, ...] = field(
        default=("127.0.0.1/8", "::1/128"),
        metadata=_doc(
            "Addresses (CIDR) of reverse proxies whose X-Forwarded-For header names the real\n"
            "client, for per-address limits. Behind a proxy on another host, add its address."
        ),
    )


@dataclass(frozen=True)
class PaymentsConfig:
    community_currencies: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            'Currencies of your own besides ISO 4217, as "CODE:SCALE" (SCALE = decimal places,\n'
            '0 to 8), e.g. ["HOURS:0", "SEEDS:2"]. Codes are 3 to 12 of A-Z and 0-9 and may\n'
            "not redefine an ISO code. Amounts are whole numbers of the smallest unit."
        ),
    )
    default_credit_limit: str = field(
        default="0",
        metadata=_doc(
            "What another node may owe this one, in each currency, unless `kith peers limit`\n"
            'says otherwise: a decimal in whole units ("100" is 100.00 EUR or 100 JPY). With\n'
            "0 no payment from another node's users is accepted until you set a limit for it."
        ),
    )
    transfer_max: str = field(
        default="0",
        metadata=_doc(
            "The most one payment may move, sent or received, in whole units of each currency\n"
            '(like default_credit_limit); "0" sets no limit.'
        ),
    )
    daily_max: str = field(
        default="0",
        metadata=_doc(
            'The most one user may pay in 24 hours, per currency, in whole units; "0" sets\n'
            "no limit."
        ),
    )
    request_expiry_minutes: int = field(
        default=60,
        metadata=_doc(
            "How long a payment request stays payable unless its payee says (1 to 43200)."
        ),
    )
    in_doubt_hours: int = field(
        default=168,
        metadata=_doc(
            "A payment another node has not answered for this long is listed by\n"
            "`kith payments in-doubt` (still reserved: it is never released on a timer)."
        ),
    )
    statement_interval_minutes: int = field(
        default=60,
        metadata=_doc(
            "How often this node proposes a netting statement to each peer node it has paid\n"
            "or been paid by (where it is the proposing side); 0 turns it off."
        ),
    )
    accept_direct_transfers: bool = field(
        default=True,
        metadata=_doc("Whether your users receive money sent to them without a request."),
    )
    transfer_acceptance_hours: int = field(
        default=0,
        metadata=_doc(
            "Money sent to your users without a request waits this many hours (at most 168)\n"
            "for them to accept it, and goes back to the sender if they do not; 0 credits it\n"
            "at once."
        ),
    )


@dataclass(frozen=True)
class MediaConfig:
    max_bytes: int = field(
        default=16 * 1024 * 1024,
        metadata=_doc(
            "Largest picture a user may upload, in bytes (Mastodon: 16 MiB). Bigger uploads are\n"
            "refused with 413 before they are decoded."
        ),
    )
    max_pixels: int = field(
        default=33_177_600,
        metadata=_doc(
            "Most pixels (width x height) an uploaded picture may have (Mastodon: 7680 x 4320).\n"
            "Checked from the file's header before it is decoded, so a small file that would\n"
            "unpack into a huge image (a decompression bomb) is refused with 422."
        ),
    )
    cache_remote: bool = field(
        default=True,
        metadata=_doc(
            "Copy peers' pictures here (fetched once, through the same address guard as every\n"
            "remote fetch, then checked and re-encoded like uploads, with a preview and a\n"
            "blurhash) and serve the copies. Pictures over a limit below, or that cannot be\n"
            "fetched, stay links to the peer's server; false leaves them all as links."
        ),
    )
    remote_max_bytes: int = field(
        default=16 * 1024 * 1024,
        metadata=_doc("Largest peer's picture copied, in bytes (its pixels: max_pixels)."),
    )
    remote_per_status: int = field(
        default=4, metadata=_doc("Pictures of one post copied at most (the others stay links).")
    )
    remote_cache_bytes: int = field(
        default=10 * 1024 * 1024 * 1024,
        metadata=_doc(
            "Total size of the copies of peers' pictures, in bytes. Once it is reached, new\n"
            "pictures stay links to the peer (nothing is evicted; copies go with their posts)."
        ),
    )


@dataclass(frozen=True)
class LoggingConfig:
    level: str = field(default="info", metadata=_doc("One of: debug, info, warning, error."))
    format: str = field(
        default="text",
        metadata=_doc('"text" (key=value, one event per line) or "json" (one object per line).'),
    )


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = field(
        default=True,
        metadata=_doc(
            "Serve /metrics (Prometheus text format) and count what it reports. Off: no\n"
            "endpoint (404) and nothing counted."
        ),
    )
    allowed: tuple[str, ...] = field(
        default=("127.0.0.1/32", "::1/128"),
        metadata=_doc(
            "Client addresses (CIDR) that may read /metrics; others get 403. Behind a reverse\n"
            "proxy listed in api.trusted_proxies the client is the one its X-Forwarded-For\n"
            "names, so public requests it passes on are refused; keep /metrics off the public\n"
            'internet anyway. To scrape from anywhere with a token: ["0.0.0.0/0", "::/0"].'
        ),
    )
    token: str = field(
        default="",
        metadata=_doc(
            "If set, /metrics also requires `Authorization: Bearer TOKEN` (set it with\n"
            "KITH_METRICS__TOKEN to keep it out of this file)."
        ),
    )


@dataclass(frozen=True)
class SmtpConfig:
    host: str = field(
        default="",
        metadata=_doc(
            "The mail server that sends password reset links. Empty: no mail is sent, and\n"
            "people who forget their password ask the operator (`kith user reset-password`)."
        ),
    )
    port: int = field(
        default=587, metadata=_doc("Its port: 587 for STARTTLS, 465 for TLS (ssl), 25 plain.")
    )
    security: str = field(
        default="starttls",
        metadata=_doc(
            '"starttls" (upgrade the connection; the usual), "ssl" (TLS from the first byte)\n'
            'or "none" (plain text: only for a relay on this machine).'
        ),
    )
    username: str = field(
        default="", metadata=_doc("The login at the mail server; empty: no login.")
    )
    password: str = field(
        default="",
        repr=False,
        metadata=_doc(
            "Its password (set it with KITH_SMTP__PASSWORD to keep it out of this file; it is\n"
            "never logged or shown)."
        ),
    )
    from_address: str = field(
        default="",
        metadata=_doc(
            'The sender of the mail, e.g. "Kith <notifications@example.com>". Empty means\n'
            "notifications@DOMAIN."
        ),
    )
    timeout_seconds: int = field(
        default=30, metadata=_doc("How long to wait for the mail server before giving up.")
    )


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration of one node."""

    instance: InstanceConfig = field(default_factory=InstanceConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def domain(self) -> str:
        return self.instance.domain

    @property
    def base_url(self) -> str:
        return self.instance.base_url


SECTION_DOCS = {
    "instance": "Who this node is.",
    "server": "Where it listens.",
    "storage": "Where it keeps its files.",
    "database": "Its database.",
    "federation": "How it talks to other servers.",
    "api": "How apps sign in and use it.",
    "payments": "Money between people.",
    "media": "Pictures people upload, and the copies kept of peers' pictures.",
    "logging": "What it tells the operator.",
    "metrics": "What it shows a monitoring system (Prometheus).",
    "smtp": "How it sends email (password resets only); no mail server is needed.",
}
REGISTRATION_MODES = ("open", "approval", "invite", "closed")
SMTP_SECURITY = ("starttls", "ssl", "none")
# Keys that were renamed: read from old files and variables as their successor.
_LEGACY_KEYS = {"instance.open_registrations": "instance.registrations"}


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _keys(section_type: type) -> dict[str, tuple[dataclasses.Field, object]]:
    hints = typing.get_type_hints(section_type)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(section_type)}


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Read the file (if any), apply environment then explicit overrides, validate, resolve."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    raw: dict[str, dict[str, object]] = {}
    if path is not None:
        raw = _read_file(path)
    values = _typed_values(raw, origin=str(path) if path else "")
    for key, (value, origin) in _environment_values(environ).items():
        values[key] = (value, origin)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = (_coerce(key, value, "command line"), "command line")
    data_dir_origin = values.get("storage.data_dir", (None, ""))[1]
    from_file = path is not None and data_dir_origin == str(path)
    return _resolve(_build(values), anchor=path.parent if from_file else cwd)


def find_config_file(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    """--config, else $KITH_CONFIG, else ./kith-data/config.toml when it exists, else none."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    default = cwd / DEFAULT_DATA_DIR / CONFIG_FILE_NAME
    return default if default.is_file() else None


def _read_file(path: Path) -> dict[str, dict[str, object]]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("config", f"file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    sections = _sections()
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(name, "unknown section", str(path))
        if not isinstance(table, dict):
            raise ConfigError(name, "must be a table ([section])", str(path))
    return data


def _typed_values(raw: dict[str, dict[str, object]], origin: str) -> dict[str, tuple[object, str]]:
    values: dict[str, tuple[object, str]] = {}
    sections = _sections()
    for section, table in raw.items():
        known = _keys(sections[section])
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if dotted in _LEGACY_KEYS:
                _legacy(values, dotted, value, origin)
                continue
            if key not in known:
                raise ConfigError(dotted, "unknown key", origin)
            values[dotted] = (_check_type(dotted, value, known[key][1], origin), origin)
    return values


def _legacy(values: dict[str, tuple[object, str]], dotted: str, value: object, origin: str) -> None:
    """An old key's value as its successor's, unless the successor is set beside it."""
    if isinstance(value, str):
        value = _coerce_bool(dotted, value, origin)
    if not isinstance(value, bool):
        raise ConfigError(dotted, f"expected true or false, got {value!r}", origin)
    successor = _LEGACY_KEYS[dotted]
    values.setdefault(successor, ("open" if value else "closed", origin))


def _environment_values(environ: Mapping[str, str]) -> dict[str, tuple[object, str]]:
    values: dict[str, tuple[object, str]] = {}
    legacy: dict[str, tuple[str, str]] = {}
    sections = _sections()
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        dotted = f"{section}.{key}"
        if dotted in _LEGACY_KEYS:
            legacy[dotted] = (text, name)
            continue
        if section not in sections or key not in _keys(sections[section]):
            raise ConfigError(dotted, "no such configuration key", name)
        values[dotted] = (_coerce(dotted, text, name), name)
    for dotted, (text, name) in legacy.items():
        _legacy(values, dotted, text, name)
    return values


def _key_type(dotted: str) -> object:
    section, _, key = dotted.partition(".")
    sections = _sections()
    if section not in sections or key not in _keys(sections[section]):
        raise ConfigError(dotted, "no such configuration key")
    return _keys(sections[section])[key][1]


def _coerce(dotted: str, value: object, origin: str) -> object:
    """Turn an environment or command-line string into the key's type."""
    expected = _key_type(dotted)
    if not isinstance(value, str) or expected is str:
        return _check_type(dotted, value, expected, origin)
    text = value.strip()
    if expected is bool:
        return _coerce_bool(dotted, text, origin)
    if expected is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(dotted, f"expected an integer, got {value!r}", origin) from None
    if expected == tuple[str, ...]:
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                raise ConfigError(dotted, "expected a JSON list of strings", origin) from None
        else:
            items = [item.strip() for item in text.split(",") if item.strip()]
        return _check_type(dotted, items, expected, origin)
    raise ConfigError(dotted, f"cannot be set from text ({expected})", origin)


def _coerce_bool(dotted: str, text: str, origin: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(dotted, f"expected true or false, got {text!r}", origin)


def _check_type(dotted: str, value: object, expected: object, origin: str) -> object:
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(dotted, f"expected true or false, got {value!r}", origin)
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(dotted, f"expected an integer, got {value!r}", origin)
    elif expected is str:
        if not isinstance(value, str):
            raise ConfigError(dotted, f"expected a string, got {value!r}", origin)
    elif expected == tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(dotted, "expected a list of strings", origin)
        return tuple(value)
    return value


def _build(values: dict[str, tuple[object, str]]) -> Config:
    sections = {}
    for section, section_type in _sections().items():
        kwargs = {
            key: values[f"{section}.{key}"][0]
            for key in _keys(section_type)
            if f"{section}.{key}" in values
        }
        sections[section] = section_type(**kwargs)
    return Config(**sections)


def _resolve(config: Config, anchor: Path) -> Config:
    """Validate every key and fill in the values that derive from others."""
    _validate_plain_keys(config)
    data_dir = (anchor / Path(config.storage.data_dir).expanduser()).resolve()
    domain = _resolve_domain(config)
    base_url = _resolve_base_url(config.instance.base_url, domain)
    database_url = _resolve_database_url(config.database.url, data_dir)
    blocked = tuple(d.strip().lower().rstrip(".") for d in config.federation.blocked_domains)
    allowed = tuple(d.strip().lower().rstrip(".") for d in config.federation.allowed_domains)
    return dataclasses.replace(
        config,
        instance=dataclasses.replace(config.instance, domain=domain, base_url=base_url),
        federation=dataclasses.replace(
            config.federation, blocked_domains=blocked, allowed_domains=allowed
        ),
        storage=dataclasses.replace(config.storage, data_dir=str(data_dir)),
        database=dataclasses.replace(config.database, url=database_url),
    )


def _validate_plain_keys(config: Config) -> None:
    if not 0 <= config.server.port <= 65535:
        raise ConfigError("server.port", f"must be between 0 and 65535, got {config.server.port}")
    if not config.server.host.strip():
        raise ConfigError("server.host", "must not be empty")
    if config.logging.level not in LOG_LEVELS:
        raise ConfigError("logging.level", f"must be one of {', '.join(LOG_LEVELS)}")
    if config.logging.format not in LOG_FORMATS:
        raise ConfigError("logging.format", f"must be one of {', '.join(LOG_FORMATS)}")
    if not config.storage.data_dir.strip():
        raise ConfigError("storage.data_dir", "must not be empty")
    for key in ("pool_size", "busy_timeout_ms", "statement_timeout_ms"):
        value = getattr(config.database, key)
        minimum = 1 if key == "pool_size" else 0
        if value < minimum:
            raise ConfigError(f"database.{key}", f"must be at least {minimum}, got {value}")
    if not config.instance.name.strip():
        raise ConfigError("instance.name", "must not be empty")
    for key in (
        "inbox_body_bytes_max",
        "delivery_concurrency",
        "delivery_per_host",
        "retention_days",
    ):
        if getattr(config.federation, key) < 1:
            raise ConfigError(f"federation.{key}", "must be at least 1")
    for key in (
        "login_attempts_per_window",
        "requests_per_window",
        "anonymous_requests_per_window",
        "rate_limit_window_seconds",
        "sign_up_attempts_per_window",
        "posts_per_window",
        "posts_window_seconds",
    ):
        if getattr(config.api, key) < 1:
            raise ConfigError(f"api.{key}", "must be at least 1")
    for key in (
        "max_bytes",
        "max_pixels",
        "remote_max_bytes",
        "remote_per_status",
        "remote_cache_bytes",
    ):
        if getattr(config.media, key) < 1:
            raise ConfigError(f"media.{key}", "must be at least 1")
    for network in config.api.trusted_proxies:
        try:
            ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise ConfigError(
                "api.trusted_proxies", f"{network!r} is not an address or CIDR"
            ) from None
    for network in config.metrics.allowed:
        try:
            ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise ConfigError("metrics.allowed", f"{network!r} is not an address or CIDR") from None
    try:
        community_currencies(config)
    except ValueError as exc:
        raise ConfigError("payments.community_currencies", str(exc)) from None
    for key in ("default_credit_limit", "transfer_max", "daily_max"):
        if not re.fullmatch(r"(0|[1-9][0-9]{0,12})", getattr(config.payments, key).strip()):
            raise ConfigError(f"payments.{key}", "must be a whole number such as 100")
    if not 1 <= config.payments.request_expiry_minutes <= 43200:
        raise ConfigError("payments.request_expiry_minutes", "must be 1 to 43200 (30 days)")
    if config.payments.statement_interval_minutes < 0:
        raise ConfigError("payments.statement_interval_minutes", "must be 0 (off) or more")
    if config.payments.in_doubt_hours < 1:
        raise ConfigError("payments.in_doubt_hours", "must be at least 1")
    if not 0 <= config.payments.transfer_acceptance_hours <= 168:
        raise ConfigError("payments.transfer_acceptance_hours", "must be 0 to 168")
    for key in ("blocked_domains", "allowed_domains"):
        for domain in getattr(config.federation, key):
            if not domain.strip() or "/" in domain or " " in domain.strip():
                raise ConfigError(f"federation.{key}", f"{domain!r} is not a domain name")
    if config.federation.mode not in ("open", "allowlist"):
        raise ConfigError("federation.mode", 'must be "open" or "allowlist"')
    _validate_registrations(config)


def _validate_registrations(config: Config) -> None:
    if config.instance.registrations not in REGISTRATION_MODES:
        raise ConfigError(
            "instance.registrations", f"must be one of {', '.join(REGISTRATION_MODES)}"
        )
    smtp = config.smtp
    if smtp.security not in SMTP_SECURITY:
        raise ConfigError("smtp.security", f"must be one of {', '.join(SMTP_SECURITY)}")
    if not 1 <= smtp.port <= 65535:
        raise ConfigError("smtp.port", f"must be between 1 and 65535, got {smtp.port}")
    if smtp.timeout_seconds < 1:
        raise ConfigError("smtp.timeout_seconds", "must be at least 1")
    if smtp.from_address.strip() and "@" not in smtp.from_address:
        raise ConfigError("smtp.from_address", "must be an email address")
    if any(ch in smtp.host for ch in " /@") or "://" in smtp.host:
        raise ConfigError("smtp.host", "is a host name or address, not a URL")


def _resolve_domain(config: Config) -> str:
    domain = config.instance.domain.strip()
    if not domain:
        return f"localhost:{config.server.port}"
    if "://" in domain or "/" in domain:
        raise ConfigError("instance.domain", "is a host name (and port), not a URL")
    try:
        return normalize_host(domain)
    except InvalidResource as exc:
        raise ConfigError("instance.domain", str(exc)) from None


def _resolve_base_url(base_url: str, domain: str) -> str:
    if not base_url.strip():
        host = domain.rpartition(":")[0] if domain.count(":") == 1 else domain
        scheme = "http" if is_loopback_host(host) else "https"
        return f"{scheme}://{domain}"
    try:
        parts = urlsplit(base_url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError("instance.base_url", f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("instance.base_url", "must be an http:// or https:// URL with a host")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ConfigError("instance.base_url", "must not have a path, query or fragment")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def is_loopback_host(host: str) -> bool:
    """Whether a host name or literal means this machine (development nodes use plain http)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_database_url(url: str, data_dir: Path) -> str:
    if not url.strip():
        return f"sqlite+aiosqlite:///{data_dir / 'kith.db'}"
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise ConfigError("database.url", "is not a database URL") from None
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
        "postgres": "postgresql+asyncpg",
        "postgresql": "postgresql+asyncpg",
        "postgresql+asyncpg": "postgresql+asyncpg",
    }.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            "database.url",
            f"unsupported database {parsed.drivername!r}: use sqlite+aiosqlite:/// or "
            "postgresql+asyncpg://",
        )
    if driver == "sqlite+aiosqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError("database.url", "SQLite needs a file path (sqlite+aiosqlite:///PATH)")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def redacted_database_url(url: str) -> str:
    """The database URL with any password masked, for logs and status output."""
    return make_url(url).render_as_string(hide_password=True)


def render_example(values: Mapping[str, object] | None = None) -> str:
    """`config.example.toml`: every key with its comment and default, or with `values` set."""
    values = dict(values or {})
    lines = [
        "# Kith node configuration.",
        "#",
        "# Every key is listed with its documentation and its default value. Any key can also be",
        "# set by an environment variable KITH_<SECTION>__<KEY>, which wins over this file, e.g.",
        "# KITH_DATABASE__URL or KITH_SERVER__PORT. The node refuses to start on an invalid value",
        "# and names the key. `kith config check` shows the result of this file and the",
        "# environment together.",
    ]
    for section, section_type in _sections().items():
        lines += ["", f"# {SECTION_DOCS[section]}", f"[{section}]"]
        for key, (fld, _) in _keys(section_type).items():
            dotted = f"{section}.{key}"
            default = (
                fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()
            )
            value = values.pop(dotted, default)
            lines += [f"# {line}" if line else "#" for line in fld.metadata["doc"].split("\n")]
            lines.append(f"{key} = {_toml_value(value)}")
    if values:
        raise ConfigError(sorted(values)[0], "no such configuration key")
    return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    """A TOML basic string: escapes quotes, backslashes and every control character."""
    escaped = []
    for ch in value:
        if ch in ('"', "\\"):
            escaped.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append(f"\\u{ord(ch):04x}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def community_currencies(config: Config) -> dict[str, int]:
    """The operator's own currencies, code to scale (checked further by payments.money)."""
    found: dict[str, int] = {}
    for entry in config.payments.community_currencies:
        code, sep, scale = entry.partition(":")
        if not sep or not scale.strip().isdigit():
            raise ValueError(f'{entry!r} is not "CODE:SCALE" (e.g. "HOURS:0")')
        found[code.strip()] = int(scale)
    Currencies(found)  # raises on codes and scales it does not take
    return found
