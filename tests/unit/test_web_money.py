"""Amounts in the web client: the reader's separators, the currency's scale, typed amounts."""

from __future__ import annotations

import pytest

from payments.money import AmountError, Currencies
from server.web.money import (
    MINUS,
    NARROW_NBSP,
    NBSP,
    STYLES,
    format_money,
    format_number,
    number_style,
    parse_money,
)

EUR = Currencies().get("EUR")
JPY = Currencies().get("JPY")
BHD = Currencies().get("BHD")


@pytest.mark.parametrize(
    ("header", "tag"),
    [
        (None, "en"),
        ("", "en"),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("de-CH", "de-CH"),
        ("en-IN,en;q=0.5", "en-IN"),
        ("xx,fr;q=0.7,de;q=0.9", "de"),  # by q-value, unknown languages skipped
        ("pt-BR", "pt"),
        ("pt-pt", "pt-PT"),
        ("*;q=1, es;q=0.1", "es"),
        ("fr;q=0, it", "it"),  # q=0 means "not this one"
        ("fr;q=abc, nl", "nl"),
        ("zz" * 400, "en"),
    ],
)
def test_the_readers_language_chooses_the_separators(header: str | None, tag: str) -> None:
    assert number_style(header).tag == tag


@pytest.mark.parametrize(
    ("tag", "minor", "currency", "shown"),
    [
        ("en", 123456789, EUR, "1,234,567.89"),
        ("de", 123456789, EUR, "1.234.567,89"),
        ("fr", 123450, EUR, f"1{NARROW_NBSP}234,50"),
        ("de-CH", 123450, EUR, "1\u2019234.50"),
        ("en-IN", 1234567890, EUR, "1,23,45,678.90"),
        ("es", 123450, EUR, "1234,50"),  # four digits stay ungrouped in Spanish
        ("es", 1234550, EUR, "12.345,50"),
        ("pl", 999999, EUR, "9999,99"),
        ("en", 5, EUR, "0.05"),
        ("en", 1234567, JPY, "1,234,567"),  # no decimals in yen
        ("de", 1234567, BHD, "1.234,567"),  # three in Bahraini dinars
        ("en", -305, EUR, f"{MINUS}3.05"),
    ],
)
def test_amounts_are_written_as_the_reader_writes_numbers(
    tag: str, minor: int, currency: object, shown: str
) -> None:
    assert format_number(minor, currency, STYLES[tag.lower()]) == shown  # type: ignore[arg-type]


def test_the_currency_code_follows_the_number_joined_by_a_no_break_space() -> None:
    assert format_money(1250, EUR, STYLES["de"]) == f"12,50{NBSP}EUR"


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [
        ("12.50", EUR, 1250),
        ("12,50", EUR, 1250),
        (" 12,5 ", EUR, 1250),
        (",5", EUR, 50),
        ("1 234", EUR, 123400),
        ("7", JPY, 7),
        ("1,234", BHD, 1234),
    ],
)
def test_typed_amounts_take_either_decimal_mark(typed: str, currency: object, minor: int) -> None:
    assert parse_money(typed, currency) == minor  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("typed", "currency", "says"),
    [
        ("", EUR, "Enter an amount"),
        ("1.234,50", EUR, "without thousands separators"),
        ("1,234,567", EUR, "without thousands separators"),
        ("1,234", EUR, "2 decimal places"),  # English thousands in euros: refused, not 1.23
        ("1.5", JPY, "no decimal places"),
        ("0", EUR, "more than zero"),
        ("-5", EUR, "more than zero"),
        ("12e3", EUR, "as a number"),
        ("ten", EUR, "as a number"),
        ("99999999999999999", EUR, "too large"),
    ],
)
def test_bad_amounts_say_what_is_wrong(typed: str, currency: object, says: str) -> None:
    with pytest.raises(AmountError, match=says):
        parse_money(typed, currency)  # type: ignore[arg-type]
