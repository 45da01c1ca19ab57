"""Money is Decimal end to end. The one rounding rule: ROUND_HALF_UP, applied once per line.

- Event cost: exact, stored rounded half-up to 9 decimal places (``round_event_cost``).
- Statement lines: computed exactly, rounded half-up once to the minor unit of the statement's
  currency (``round_minor``: USD 2 decimals, JPY 0, KWD 3; ``round_cents`` is USD's); a statement
  total is the sum of its rounded lines. Stripe receives those same minor units as integers.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, localcontext

ZERO = Decimal(0)
CENT = Decimal("0.01")
NANO = Decimal("0.000000001")
_PREC60 = Context(prec=60)  # the default context's traps, 60 digits


def D(value: object) -> Decimal:
    if isinstance(value, float):
        raise TypeError("money must never be a float")
    return value if isinstance(value, Decimal) else Decimal(str(value))


def reject_float(value: object) -> object:
    """A pydantic ``mode="before"`` validator for prices read from YAML: a bare 0.1 is a float and
    may already be inexact, so prices must be quoted strings."""
    if isinstance(value, float):
        raise ValueError('write prices as quoted strings, e.g. "0.25", never floats')
    return value


def decimal_text(value: object) -> object:
    """A pydantic ``mode="before"`` validator for money (and percentages) in a request body, on a
    Decimal field with ``strict=False`` so that the text is parsed: a decimal string such as
    "25.00", or a Decimal built in code. A JSON number is refused, float or not: a float may
    already be inexact, true/false would pass as 1/0, and the contract (openapi.yaml) writes these
    as text."""
    if value is None or isinstance(value, (str, Decimal)):
        return value
    raise ValueError('write it as a quoted decimal string, e.g. "25.00", never a JSON number')


def round_event_cost(amount: Decimal) -> Decimal:
    return amount.quantize(NANO, rounding=ROUND_HALF_UP, context=_PREC60)


# ISO 4217 minor-unit exponents that differ from 2 (Stripe's zero-decimal and three-decimal currencies).
_EXPONENTS = {
    **dict.fromkeys(
        [
            "bif",
            "clp",
            "djf",
            "gnf",
            "jpy",
            "kmf",
            "krw",
            "mga",
            "pyg",
            "rwf",
            "ugx",
            "vnd",
            "vuv",
            "xaf",
            "xof",
            "xpf",
        ],
        0,
    ),
    **dict.fromkeys(["bhd", "jod", "kwd", "omr", "tnd"], 3),
}


def exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 unless ISO 4217 says otherwise)."""
    return _EXPONENTS.get(currency.lower(), 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def round_minor(amount: Decimal, currency: str) -> Decimal:
    """The one rounding rule for a statement line: half-up once, to the currency's minor unit."""
    with localcontext() as ctx:
        ctx.prec = 60
        return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """Integer minor units of an amount already rounded to them (raises if it is not)."""
    units = amount.scaleb(exponent(currency))
    if units != units.to_integral_value():
        unit = "cents" if exponent(currency) == 2 else f"{currency} minor units"
        raise ValueError(f"{amount} is not a whole number of {unit}")
    return int(units)


def from_minor(units: int, currency: str) -> Decimal:
    """An integer of minor units as the amount it stands for (``1500`` CZK is ``15.00``)."""
    return Decimal(units).scaleb(-exponent(currency))


def fmt_minor(amount: Decimal, currency: str) -> str:
    """The rounded amount with exactly the currency's decimals (``12.30`` USD, ``1230`` JPY)."""
    return f"{round_minor(amount, currency):.{exponent(currency)}f}"


def round_cents(amount: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def to_cents(amount: Decimal) -> int:
    """Integer cents of an amount already rounded to cents (raises if it is not)."""
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of cents")
    return int(cents)


def fmt(amount: Decimal) -> str:
    return f"{round_cents(amount):.2f}"
