"""The values the charge models (graduated, volume, package, per_unit) take and give.

A ``Use`` is one non-trial pricing segment's units of one charge under the plan in force; a model
turns the month's uses (in time order) into ``Priced`` amounts, one per future statement line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.catalog.plans import Charge, Plan


@dataclass(frozen=True)
class Use:
    plan: Plan
    charge: Charge  # the plan's charge with this id
    quantity: int | Decimal  # an exact decimal for a metric with fractional values
    start: datetime
    end: datetime


@dataclass
class Priced:
    """One line's worth: ``key`` is unique within the charge (e.g. ``pro:t2``); ``exact`` unrounded.
    What the line's words need (billing.rating.wording): ``charge`` (the plan's), ``tier_index`` (the
    tier priced: graduated, volume), ``flat`` (a tier's flat amount included in ``exact``), ``used``
    (package: the units the packages hold)."""

    plan: Plan
    key: str
    quantity: Decimal
    unit_price: Decimal | None
    exact: Decimal
    start: datetime
    end: datetime
    charge: Charge
    tier_index: int | None = None
    flat: Decimal = Decimal(0)
    used: int | Decimal = 0
