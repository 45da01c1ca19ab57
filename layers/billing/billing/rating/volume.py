"""Volume charges: every unit of the month priced at the tier the month's total reaches.

Invariants: the tier is decided by the month's total of non-trial units across plans, so splitting
the month at any instant (a plan change) gives the same tier; each plan's units are priced at that
tier under its own prices (each plan's tier holding the total); the reached tier's ``flat_amount``
is charged once, under the plan of the month's last unit. A month with no unit charges nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from billing.kernel.money import ZERO
from billing.rating.pricing_types import Priced, Use
from billing.rating.tiers import tier_index


def volume_total(uses: Sequence[Use]) -> int | Decimal:
    total: int | Decimal = 0
    for use in uses:
        total += use.quantity
    return total


def volume(uses: Sequence[Use]) -> list[Priced]:
    total = volume_total(uses)
    if total == 0:
        return []
    out: dict[str, Priced] = {}
    for use in uses:
        if use.quantity == 0:
            continue
        index = tier_index(use.charge.tiers, total)
        priced = out.get(use.plan.id)
        if priced is None:
            price = use.charge.tiers[index].unit_price
            priced = out[use.plan.id] = Priced(
                use.plan,
                f"{use.plan.id}:t{index + 1}",
                ZERO,
                price,
                ZERO,
                use.start,
                use.end,
                use.charge,
                index,
            )
        priced.quantity += use.quantity
        priced.end = use.end
    last = next(u for u in reversed(uses) if u.quantity)
    for plan_id, priced in out.items():
        charge = next(u.charge for u in uses if u.plan.id == plan_id)
        index = tier_index(charge.tiers, total)
        price = priced.unit_price or ZERO
        priced.exact = price * priced.quantity
        priced.flat = charge.tiers[index].flat_amount if plan_id == last.plan.id else ZERO
        priced.exact += priced.flat
    return sorted(out.values(), key=lambda p: (p.start, p.key))
