"""Amounts as people read and write them: the currency's own scale (payments/money.py) and the
decimal and grouping separators of the reader's language, from `Accept-Language`.

Babel is not a dependency, and the standard library's `locale` module formats for the whole
process (not per request) and only for locales the system has generated. So this is a small
table of CLDR's number symbols for a handful of locales; any other language reads amounts as
English does. The currency is always written as its code after the number ("1.234,56 EUR"):
community currencies have no symbol, and a code is never ambiguous.

Typed amounts are read with at most one separator, taken as the decimal mark whichever it is
("12,50" and "12.50" are both twelve and a half); thousands separators are refused rather than
guessed at, and every payment shows the amount as read before it is confirmed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from payments.money import AmountError, Currency, format_amount, parse_amount

NBSP = "\u00a0"
NARROW_NBSP = "\u202f"
MINUS = "\u2212"


@dataclass(frozen=True)
class NumberStyle:
    """How a locale writes numbers (CLDR's `decimal`, `group` and minimumGroupingDigits)."""

    tag: str
    decimal: str
    group: str
    # 2: a four-digit whole part stays ungrouped (Spanish and Polish write 1234 but 12 345).
    min_grouping: int = 1
    # Indian grouping: thousands, then groups of two (1,23,45,678.90).
    indian: bool = False


ENGLISH = NumberStyle("en", ".", ",")
STYLES = {
    style.tag.lower(): style
    for style in (
        ENGLISH,
        NumberStyle("en-IN", ".", ",", indian=True),
        NumberStyle("hi", ".", ",", indian=True),
        NumberStyle("de", ",", "."),
        NumberStyle("de-AT", ",", NBSP),
        NumberStyle("de-CH", ".", "\u2019"),
        NumberStyle("fr", ",", NARROW_NBSP),
        NumberStyle("es", ",", ".", min_grouping=2),
        NumberStyle("es-MX", ".", ","),
        NumberStyle("it", ",", "."),
        NumberStyle("nl", ",", "."),
        NumberStyle("pt", ",", "."),
        NumberStyle("pt-PT", ",", NBSP, min_grouping=2),
        NumberStyle("pl", ",", NBSP, min_grouping=2),
        NumberStyle("ru", ",", NBSP),
        NumberStyle("uk", ",", NBSP),
        NumberStyle("sv", ",", NBSP),
        NumberStyle("ja", ".", ","),
        NumberStyle("zh", ".", ","),
        NumberStyle("ko", ".", ","),
    )
}
_LANGUAGE_RANGE = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
_ACCEPT_LANGUAGE_MAX = 500  # longer headers are read only this far
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009]")


def number_style(accept_language: str | None) -> NumberStyle:
    """The style of the first language the reader prefers (by q-value) that we know, by its
    full tag (de-CH) or its language (de); English otherwise."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "")[:_ACCEPT_LANGUAGE_MAX].split(",")):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        if _LANGUAGE_RANGE.match(tag) and 0 < quality <= 1:
            ranked.append((-quality, position, tag.lower()))
    for _, _, tag in sorted(ranked):
        subtags = tag.split("-")
        for length in range(len(subtags), 0, -1):
            found = STYLES.get("-".join(subtags[:length]))
            if found is not None:
                return found
    return ENGLISH


def format_money(minor: int, currency: Currency, style: NumberStyle = ENGLISH) -> str:
    """Minor units as the reader writes numbers, with the currency's scale and code:
    `1,234.50 EUR`, `1.234,50 EUR`, `1 234,50 EUR`, `-5 JPY` (a real minus sign)."""
    return f"{format_number(minor, currency, style)}{NBSP}{currency.code}"


def format_number(minor: int, currency: Currency, style: NumberStyle = ENGLISH) -> str:
    """The number alone (`1,234.50`), for places where the code is said apart."""
    whole, _, fraction = format_amount(abs(minor), currency).partition(".")
    text = _grouped(whole, style) + (style.decimal + fraction if fraction else "")
    return MINUS + text if minor < 0 else text


def _grouped(digits: str, style: NumberStyle) -> str:
    if len(digits) < 3 + style.min_grouping:
        return digits
    head, groups = digits[:-3], [digits[-3:]]
    size = 2 if style.indian else 3
    while head:
        groups.insert(0, head[-size:])
        head = head[:-size]
    return style.group.join(groups)


def parse_money(text: str, currency: Currency) -> int:
    """A typed amount as minor units: spaces ignored, at most one separator (`.` or `,`),
    which is the decimal mark; AmountError says what is wrong, in words for people."""
    plain = _SPACES.sub("", text or "")
    if not plain:
        raise AmountError("Enter an amount.")
    if plain.count(".") + plain.count(",") > 1:
        raise AmountError("Write the amount without thousands separators, such as 1234.50.")
    plain = plain.replace(",", ".")
    if plain.startswith("."):
        plain = "0" + plain
    if plain.startswith("-"):
        raise AmountError("The amount must be more than zero.")
    try:
        return parse_amount(plain, currency)
    except AmountError as exc:
        raise AmountError(_in_words(str(exc), currency)) from None


def _in_words(problem: str, currency: Currency) -> str:
    if "decimal places" in problem:
        if currency.scale == 0:
            return f"{currency.code} has no decimal places: enter a whole number."
        return f"{currency.code} has {currency.scale} decimal places, not more."
    if "more than zero" in problem:
        return "The amount must be more than zero."
    if "too large" in problem:
        return "That amount is too large."
    return "Enter an amount as a number, such as 12.50."
