"""Graduated charges: each unit priced by the tier its cumulative position in the month falls in.

Invariants: the month's units are walked in time order across plans (a plan change continues the
count; each unit is priced by the tiers of the plan in force when it was used), so splitting the
month anywhere changes no amount; a tier's ``flat_amount`` is charged exactly once, by the plan in
force when the tier's first unit is used, and never for a tier no unit reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from billing.kernel.money import ZERO
from billing.rating.pricing_types import Priced, Use
from billing.rating.tiers import tier_lower, walk_tiers


def graduated(uses: Sequence[Use], position: int | Decimal = 0) -> list[Priced]:
    """``position``: units of the month already priced (a late batch continues after them)."""
    out: dict[tuple[str, int], Priced] = {}
    for use in uses:
        tiers = use.charge.tiers
        for piece in walk_tiers(tiers, position, use.quantity):
            key = (use.plan.id, piece.tier_index)
            priced = out.get(key)
            if priced is None:
                priced = out[key] = Priced(
                    use.plan, f"{use.plan.id}:t{piece.tier_index + 1}", ZERO, piece.unit_price, ZERO,
                    use.start, use.end, use.charge, piece.tier_index,
                )  # fmt: skip
            priced.quantity += piece.quantity
            priced.exact += piece.unit_price * piece.quantity
            priced.end = use.end
            if use.quantity < 0:  # voided units: a tier left empty gives its flat amount back
                if position + use.quantity <= tier_lower(tiers, piece.tier_index):
                    flat = tiers[piece.tier_index].flat_amount
                    if flat:
                        priced.flat = -flat
                        priced.exact -= flat
            elif position <= tier_lower(tiers, piece.tier_index):  # this piece holds the tier's first unit
                flat = tiers[piece.tier_index].flat_amount
                if flat:
                    priced.flat = flat
                    priced.exact += flat
        position += use.quantity
    return sorted(out.values(), key=lambda p: (p.start, p.key))
