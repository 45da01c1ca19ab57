"""Package charges: a price per block of ``package_size`` units, a partial block rounded up.

Invariants: blocks are counted over the month's cumulative units across plans - a block is charged
when its first unit is used, under the plan in force then (a block opened before a plan change is
filled after it at no charge), so one plan's month of n units is exactly ceil(n / size) blocks,
however the month is split; a late batch continues the month's count. Units and the size may be
exact decimals (0.5 GB-hour blocks): the blocks are counted exactly (as fractions, never a rounded
quotient), so a partial block is rounded up once, where it opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from math import ceil

from billing.kernel.money import ZERO
from billing.rating.pricing_types import Priced, Use


def blocks_between(before: int | Decimal, after: int | Decimal, size: int | Decimal) -> int:
    """Blocks opened by the units in (before, after]: ceil(after/size) - ceil(before/size)."""
    return ceil(Fraction(after) / Fraction(size)) - ceil(Fraction(before) / Fraction(size))


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
