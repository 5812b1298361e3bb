"""Amounts: integer minor units of a currency with its scale; decimal strings at the edges.

Never floats: "12.50" EUR is 1250 minor units at scale 2. ISO 4217 scales are built in;
operators may add community currencies with their own scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The largest amount Kith handles (minor units): well inside a signed 64-bit column, so that
# sums of many amounts cannot overflow either.
AMOUNT_MAX = 10**15

# ISO 4217 currencies whose minor unit is not 2 (the default for every other code).
_ISO_SCALES = {
    "BHD": 3,
    "BIF": 0,
    "CLF": 4,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "UYW": 4,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}
# The ISO 4217 codes in use (active codes, funds and precious metals excluded); a table is
# easier to check against the standard than a list of quoted strings.
_ISO_CODES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWG""".split()  # noqa: SIM905
)
_CODE = re.compile(r"^[A-Z][A-Z0-9]{2,11}$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(?:\.([0-9]+))?$")


class AmountError(ValueError):
    """An amount or currency that cannot be used, with what is wrong."""


@dataclass(frozen=True)
class Currency:
    code: str
    scale: int


class Currencies:
    """The currencies a node accepts: ISO 4217 and the operator's own."""

    def __init__(self, community: dict[str, int] | None = None) -> None:
        self._community: dict[str, int] = {}
        for code, scale in (community or {}).items():
            if not _CODE.match(code):
                raise AmountError(f"{code!r} is not a currency code (A-Z, 0-9, 3 to 12 long)")
            if code in _ISO_CODES:
                raise AmountError(f"{code} is an ISO 4217 currency; it cannot be redefined")
            if not 0 <= scale <= 8:
                raise AmountError(f"the scale of {code} must be 0 to 8, not {scale}")
            self._community[code] = scale

    def get(self, code: str) -> Currency:
        if code in _ISO_CODES:
            return Currency(code, _ISO_SCALES.get(code, 2))
        if code in self._community:
            return Currency(code, self._community[code])
        raise AmountError(f"unknown currency {code!r}")


def parse_amount(text: str, currency: Currency) -> int:
    """A positive decimal string ("12.50") as minor units; more decimals than the scale, zero,
    signs, exponents and amounts above the maximum are refused."""
    match = _DECIMAL.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise AmountError(f"{text!r} is not a decimal amount such as 12.50")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > currency.scale:
        raise AmountError(f"{currency.code} has {currency.scale} decimal places, not more")
    minor = int(whole) * 10**currency.scale + int(fraction.ljust(currency.scale, "0") or "0")
    check_minor(minor)
    return minor


def check_minor(minor: int) -> int:
    """A transfer amount: a positive integer no larger than AMOUNT_MAX."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise AmountError("an amount is a whole number of minor units")
    if minor <= 0:
        raise AmountError("an amount must be more than zero")
    if minor > AMOUNT_MAX:
        raise AmountError("the amount is too large")
    return minor


def format_amount(minor: int, currency: Currency) -> str:
    """Minor units as a decimal string with the currency's scale ("-3.05" for -305 at 2)."""
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**currency.scale)
    if currency.scale == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{currency.scale}d}"
