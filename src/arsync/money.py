"""Exact decimal money and ISO 4217 currency exponents."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

# Currencies whose minor unit is not 2 digits. Everything else defaults to 2.
_EXPONENTS: dict[str, int] = {
    # three decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # no decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip

MAX_EXPONENT = 3

# What the ledger's columns hold (NUMERIC(18, 4) and NUMERIC(18, 6); on SQLite a scaled 64-bit
# integer): amounts below 10^14, quantities and unit prices below 10^12.
AMOUNT_PLACES, AMOUNT_LIMIT = 4, Decimal(10**14)
QUANTITY_PLACES, QUANTITY_LIMIT = 6, Decimal(10**12)


def exponent(currency: str) -> int:
    """Number of minor-unit digits for an ISO 4217 currency code."""
    return _EXPONENTS.get(currency.upper(), 2)


def canonical(value: Decimal) -> Decimal:
    """``value`` without trailing fractional zeros and never in exponent form (10, not 1E+1)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def decimal_places(value: Decimal) -> int:
    """Fractional digits actually used by ``value`` (trailing zeros ignored)."""
    exp = value.normalize().as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def format_amount(value: Decimal, currency: str) -> str:
    """``value`` as a plain string with the currency's number of decimals, e.g. ``1150.005``."""
    places = max(exponent(currency), decimal_places(value))
    return f"{value:.{places}f}"


DISPLAY_LOCALE = "en_US"


def display(value: Decimal, currency: str) -> str:
    """``value`` as finance people read it, with Babel's locale formatting: grouped thousands, the
    currency's ISO 4217 decimals (more only where the amount has more, so nothing is hidden) and
    the code, e.g. ``7,040,603.39 USD`` or ``1,150.005 KWD``.

    The decimals come from :func:`exponent`, not from Babel's CLDR data, which differs from
    ISO 4217 for a few currencies (IQD), so what is shown is what is stored and sent.
    """
    pattern, locale = _display_pattern(exponent(currency))
    return str(pattern.apply(value, locale, currency=currency.upper(), currency_digits=False,
                             decimal_quantization=False))  # fmt: skip


@cache
def _display_pattern(places: int) -> tuple[Any, Any]:
    """Babel's parsed pattern for ``places`` decimals: ``format_currency`` would parse it on every
    call, a third of its time, and a report shows hundreds of amounts."""
    from babel import Locale  # on first use: the CLI starts without Babel
    from babel.numbers import parse_pattern

    return parse_pattern("#,##0" + ("." + "0" * places if places else "") + " ¤¤"), Locale.parse(DISPLAY_LOCALE)
