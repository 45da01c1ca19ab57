"""Money is Decimal end to end. The one rounding rule: ROUND_HALF_UP, applied once per line.

- Event cost: exact, stored rounded half-up to 9 decimal places (``round_event_cost``).
- Statement lines: computed exactly, rounded half-up to cents once (``round_cents``); a statement
  total is the sum of its rounded lines. Stripe receives those same cents as integers.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

ZERO = Decimal(0)
CENT = Decimal("0.01")
NANO = Decimal("0.000000001")


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


def round_event_cost(amount: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return amount.quantize(NANO, rounding=ROUND_HALF_UP)


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
