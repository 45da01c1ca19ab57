"""Per-unit charges: every unit at the unit price of the plan in force when it was used."""

from __future__ import annotations

from collections.abc import Sequence

from billing.kernel.money import ZERO
from billing.rating.pricing_types import Priced, Use


def per_unit(uses: Sequence[Use]) -> list[Priced]:
    out: dict[str, Priced] = {}
    for use in uses:
        if not use.quantity:
            continue
        price = use.charge.unit_price
        assert price is not None
        priced = out.get(use.plan.id)
        if priced is None:
            priced = out[use.plan.id] = Priced(
                use.plan, use.plan.id, ZERO, price, ZERO, use.start, use.end, use.charge
            )
        priced.quantity += use.quantity
        priced.exact = price * priced.quantity
        priced.end = use.end
    return sorted(out.values(), key=lambda p: (p.start, p.key))
