"""Graduated tier math: which tier each cumulative query position falls in.

Invariant: walking ``count`` queries from ``position`` gives exactly the slices of pricing each query at
its own position, so splitting a walk anywhere (a plan change, a late batch) never changes an amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


class Tier(Protocol):
    """A query tier or a charge tier: a cumulative upper bound (None = unbounded) and a unit price."""

    @property
    def up_to(self) -> int | None: ...

    @property
    def unit_price(self) -> Decimal: ...


@dataclass(frozen=True)
class TierSlice:
    tier_index: int  # 0-based
    quantity: int | Decimal
    unit_price: Decimal


def walk_tiers(tiers: Sequence[Tier], position: int | Decimal, count: int | Decimal) -> list[TierSlice]:
    """Queries at cumulative positions position+1 .. position+count, split by graduated tier."""
    slices: list[TierSlice] = []
    lower = 0
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


def tier_lower(tiers: Sequence[Tier], index: int) -> int:
    """Units below the tier (its first unit is at cumulative position lower + 1)."""
    return 0 if index == 0 else (tiers[index - 1].up_to or 0)


def tier_index(tiers: Sequence[Tier], position: int | Decimal) -> int:
    """The tier holding cumulative position ``position`` (>= 1)."""
    for index, tier in enumerate(tiers):
        if tier.up_to is None or position <= tier.up_to:
            return index
    raise ValueError("the last tier must be unbounded")


def tier_label(tiers: Sequence[Tier], index: int, unit: str = "queries") -> str:
    lower = tier_lower(tiers, index)
    upper = tiers[index].up_to
    return f"{unit} {lower + 1:,}+" if upper is None else f"{unit} {lower + 1:,}-{upper:,}"
