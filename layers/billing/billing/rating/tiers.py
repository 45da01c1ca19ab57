"""Graduated tier math: which tier each cumulative query position falls in.

Invariant: walking ``count`` queries from ``position`` gives exactly the slices of pricing each query at
its own position, so splitting a walk anywhere (a plan change, a late batch) never changes an amount.
Positions, counts and bounds may be exact Decimals with a fraction (0.5 GB-hours): a tier holds the
units above its lower bound up to and including its upper bound, and the arithmetic is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

Quantity = int | Decimal  # units: a count, or an exact decimal (a gauge's GB-hours)


class Tier(Protocol):
    """A query tier or a charge tier: a cumulative upper bound (None = unbounded) and a unit price."""

    @property
    def up_to(self) -> Quantity | None: ...

    @property
    def unit_price(self) -> Decimal: ...


@dataclass(frozen=True)
class TierSlice:
    tier_index: int  # 0-based
    quantity: Quantity
    unit_price: Decimal


def walk_tiers(tiers: Sequence[Tier], position: Quantity, count: Quantity) -> list[TierSlice]:
    """Queries at cumulative positions position+1 .. position+count, split by graduated tier.

    A negative ``count`` (voided units) takes units off the end of the walk: the units at positions
    position+count+1 .. position, as negative slices, so pricing ``position`` units and then
    ``count`` gives exactly what pricing ``position + count`` units from 0 gives."""
    if count < 0:
        return [
            TierSlice(s.tier_index, -s.quantity, s.unit_price)
            for s in walk_tiers(tiers, position + count, -count)
        ]
    slices: list[TierSlice] = []
    lower: Quantity = 0
    for index, tier in enumerate(tiers):
        upper = tier.up_to
        a = max(position, lower)
        b = position + count if upper is None else min(position + count, upper)
        if b > a:
            slices.append(TierSlice(index, b - a, tier.unit_price))
        if upper is None:
            break
        lower = upper
    return slices


def tier_lower(tiers: Sequence[Tier], index: int) -> Quantity:
    """Units below the tier (its first unit is at cumulative position lower + 1)."""
    return 0 if index == 0 else (tiers[index - 1].up_to or 0)


def tier_index(tiers: Sequence[Tier], position: Quantity) -> int:
    """The tier holding cumulative position ``position`` (> 0): the first whose bound reaches it."""
    for index, tier in enumerate(tiers):
        if tier.up_to is None or position <= tier.up_to:
            return index
    raise ValueError("the last tier must be unbounded")


def tier_label(tiers: Sequence[Tier], index: int, unit: str = "queries") -> str:
    lower = tier_lower(tiers, index)
    upper = tiers[index].up_to
    if _whole(lower) and (upper is None or _whole(upper)):
        return f"{unit} {lower + 1:,}+" if upper is None else f"{unit} {lower + 1:,}-{upper:,}"
    return f"{unit} over {lower:,}" if upper is None else f"{unit} over {lower:,} up to {upper:,}"


def _whole(n: Quantity) -> bool:
    return isinstance(n, int) or n == n.to_integral_value()
