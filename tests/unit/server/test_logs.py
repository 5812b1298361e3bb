"""Structured log lines: key=value and JSON, with extra fields and the request id."""

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.logs import JsonFormatter, KeyValueFormatter, event_fields, request_id_var


class _Capture:
    """A real logger writing through one formatter into a string buffer."""

    def __init__(self, formatter: logging.Formatter, name: str) -> None:
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(formatter)
        self.logger = logging.getLogger(name)
        self.logger.handlers[:] = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def line(self) -> str:
        (line,) = self.lines()
        return line


@pytest.fixture
def kv() -> Iterator[_Capture]:
    capture = _Capture(KeyValueFormatter(), "kith.test.kv")
    yield capture
    capture.logger.handlers.clear()


@pytest.fixture
def js() -> Iterator[_Capture]:
    capture = _Capture(JsonFormatter(), "kith.test.json")
    yield capture
    capture.logger.handlers.clear()


@pytest.fixture
def request_id() -> Iterator[str]:
    token = request_id_var.set("req-7f3a")
    yield "req-7f3a"
    request_id_var.reset(token)


# --- key=value ----------------------------------------------------------------------------


def test_key_value_line_has_time_level_logger_message_then_fields(kv: _Capture) -> None:
    kv.logger.info("delivered", extra={"activity_id": "https://a.example/1"})
    stamp, level, logger, message, field = kv.line().split(" ")
    assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert stamp.endswith("Z")
    assert (level, logger, message) == ("info", "kith.test.kv", "delivered")
    assert field == "activity_id=https://a.example/1"


def test_key_value_includes_every_extra_field_in_order(kv: _Capture) -> None:
    kv.logger.warning("retry", extra={"attempts": 3, "inbox": "https://b.example/inbox"})
    assert kv.line().endswith(" retry attempts=3 inbox=https://b.example/inbox")


def test_key_value_quotes_values_with_spaces(kv: _Capture) -> None:
    kv.logger.error("failed", extra={"reason": "connection refused by peer"})
    assert kv.line().endswith(' reason="connection refused by peer"')


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("tab\there", '"tab\\there"'),
        ("plain-value_1.2", "plain-value_1.2"),
        ("héllo", "héllo"),
        (None, "None"),
        (True, "True"),
    ],
)
def test_key_value_quotes_only_what_would_be_ambiguous(
    kv: _Capture, value: object, rendered: str
) -> None:
    kv.logger.info("event", extra={"v": value})
    assert kv.line().endswith(f" v={rendered}")


def test_key_value_field_with_a_newline_stays_on_one_line(kv: _Capture) -> None:
    kv.logger.info("event", extra={"body": "line one\nline two"})
    assert kv.line().endswith(' body="line one\\nline two"')


def test_key_value_message_with_a_newline_stays_on_one_line(kv: _Capture) -> None:
    # Messages interpolate peer-controlled text; a newline must not forge a second event.
    kv.logger.info("rejected %s", "x\n2030-01-01T00:00:00.000000Z info kith forged")
    assert len(kv.lines()) == 1


def test_key_value_carries_the_request_id(kv: _Capture, request_id: str) -> None:
    kv.logger.info("handled", extra={"status": 202})
    assert kv.line().endswith(f" handled status=202 request_id={request_id}")


def test_key_value_without_a_request_id_has_no_request_id_field(kv: _Capture) -> None:
    kv.logger.info("handled")
    assert "request_id" not in kv.line()


def test_key_value_appends_the_traceback(kv: _Capture) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        kv.logger.exception("crashed", extra={"job": 5})
    first, *rest = kv.lines()
    assert first.endswith(" crashed job=5")
    assert rest[0].startswith("Traceback")
    assert rest[-1] == "RuntimeError: boom"


# --- JSON ---------------------------------------------------------------------------------


def test_json_line_is_one_object_with_standard_keys_and_extras(js: _Capture) -> None:
    js.logger.info("delivered %s", "Create", extra={"activity_id": "https://a.example/1"})
    entry = json.loads(js.line())
    assert entry["level"] == "info"
    assert entry["logger"] == "kith.test.json"
    assert entry["event"] == "delivered Create"
    assert entry["activity_id"] == "https://a.example/1"
    moment = datetime.fromisoformat(entry["time"])
    assert moment.utcoffset() is not None
    assert moment.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60


def test_json_keeps_value_types_and_stringifies_the_rest(js: _Capture) -> None:
    js.logger.info(
        "event",
        extra={"count": 3, "ok": True, "none": None, "path": Path("/srv/kith"), "title": "héllo"},
    )
    entry = json.loads(js.line())
    assert entry["count"] == 3
    assert entry["ok"] is True
    assert entry["none"] is None
    assert entry["path"] == "/srv/kith"
    assert entry["title"] == "héllo"


def test_json_keeps_values_with_spaces_and_newlines_intact(js: _Capture) -> None:
    js.logger.info("event", extra={"reason": "connection refused\nby peer"})
    assert json.loads(js.line())["reason"] == "connection refused\nby peer"


def test_json_carries_the_request_id(js: _Capture, request_id: str) -> None:
    js.logger.info("handled")
    assert json.loads(js.line())["request_id"] == request_id


def test_json_without_a_request_id_has_no_request_id_key(js: _Capture) -> None:
    js.logger.info("handled")
    assert "request_id" not in json.loads(js.line())


def test_json_puts_the_traceback_in_the_same_line(js: _Capture) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        js.logger.exception("crashed")
    entry = json.loads(js.line())
    assert entry["event"] == "crashed"
    assert entry["level"] == "error"
    assert entry["exception"].startswith("Traceback")
    assert entry["exception"].endswith("RuntimeError: boom")


# --- event_fields -------------------------------------------------------------------------


def test_event_fields_leave_out_the_records_own_attributes() -> None:
    record = logging.getLogger("kith.test").makeRecord(
        "kith.test", logging.INFO, __file__, 1, "msg %s", ("x",), None, extra={"peer": "b"}
    )
    record.getMessage()
    assert event_fields(record) == {"peer": "b"}


def test_an_explicit_request_id_field_wins_over_the_context(request_id: str) -> None:
    record = logging.getLogger("kith.test").makeRecord(
        "kith.test", logging.INFO, __file__, 1, "msg", (), None, extra={"request_id": "mine"}
    )
    assert event_fields(record) == {"request_id": "mine"}
