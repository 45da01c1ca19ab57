"""Package charges: a price per block of ``package_size`` units, a partial block rounded up.

Invariants: blocks are counted over the month's cumulative units across plans - a block is charged
when its first unit is used, under the plan in force then (a block opened before a plan change is
filled after it at no charge), so one plan's month of n units is exactly ceil(n / size) blocks,
however the month is split; a late batch continues the month's count.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal

from billing.kernel.money import ZERO
from billing.rating.pricing_types import Priced, Use


def _ceil_div(units: int | Decimal, size: int) -> int:
    if isinstance(units, int):
        return -(-units // size)
    return int((units / size).to_integral_value(rounding=ROUND_CEILING))  # a fraction of a unit


def blocks_between(before: int | Decimal, after: int | Decimal, size: int) -> int:
    """Blocks opened by the units at positions before+1 .. after: ceil(after/size) - ceil(before/size)."""
    return _ceil_div(after, size) - _ceil_div(before, size)


def package(uses: Sequence[Use], position: int | Decimal = 0) -> list[Priced]:
    out: dict[str, Priced] = {}
    for use in uses:
        size, price = use.charge.package_size, use.charge.package_price
        assert size is not None and price is not None
        opened = blocks_between(position, position + use.quantity, size)
        position += use.quantity
        if not use.quantity:
            continue
        priced = out.get(use.plan.id)
        if priced is None:
            priced = out[use.plan.id] = Priced(
                use.plan, use.plan.id, ZERO, price, ZERO, use.start, use.end, use.charge
            )
        priced.quantity += opened
        priced.exact = price * priced.quantity
        priced.end = use.end
        priced.used += use.quantity
    for priced in out.values():
        priced.quantity = Decimal(priced.quantity)
    return sorted(out.values(), key=lambda p: (p.start, p.key))
