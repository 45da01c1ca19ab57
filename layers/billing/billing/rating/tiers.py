"""Graduated tier math: which tier each cumulative query position falls in.

Invariant: walking ``count`` queries from ``position`` gives exactly the slices of pricing each query at
its own position, so splitting a walk anywhere (a plan change, a late batch) never changes an amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from billing.plans import Tier


@dataclass(frozen=True)
class TierSlice:
    tier_index: int  # 0-based
    quantity: int
    unit_price: Decimal


def walk_tiers(tiers: Sequence[Tier], position: int, count: int) -> list[TierSlice]:
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


def tier_label(tiers: Sequence[Tier], index: int) -> str:
    lower = 0 if index == 0 else (tiers[index - 1].up_to or 0)
    upper = tiers[index].up_to
    return f"queries {lower + 1:,}+" if upper is None else f"queries {lower + 1:,}-{upper:,}"
