"""Structured logging: one event per line, key=value or JSON, with the request id attached."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kith_request_id", default=None
)
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def event_fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields of a record: its `extra=` values plus the request id."""
    fields = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
    request_id = request_id_var.get()
    if request_id:
        fields.setdefault("request_id", request_id)
    return fields


class KeyValueFormatter(logging.Formatter):
    """`time level logger message key=value ...`, values quoted when they hold spaces."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        message = (
            record.getMessage().replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        )
        parts = [stamp, record.levelname.lower(), record.name, message]
        parts += [f"{key}={_kv_value(value)}" for key, value in event_fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(event_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _kv_value(value: object) -> str:
    text = str(value)
    if not text or any(ch.isspace() or ch in '"=' for ch in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def configure_logging(level: str, fmt: str) -> None:
    """Send the `kith` and aiohttp loggers to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log costs half the request rate (performance.md A.8); request
    # outcomes that matter are logged by our middleware instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
