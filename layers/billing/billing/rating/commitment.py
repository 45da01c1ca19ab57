"""Minimum commitment: a plan's monthly minimum, prorated like its base fee, with a true-up line.

Invariants: the month's required minimum is the sum over its plan intervals of ``minimum_commitment
x non-trial seconds / month seconds`` (a plan without one contributes nothing); the month's charges
are every line of the month itself (base fee, queries, charges, usage cost; not prior-period
adjustments); when they are below the minimum one ``commitment:true_up`` line of the difference
(rounded half-up once) brings the statement up to it; otherwise there is no line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from billing.catalog.plans import Plan
from billing.kernel.money import ZERO, round_minor
from billing.kernel.periods import RatedPeriod
from billing.rating import wording
from billing.rating.lines import line
from billing.rating.segments import Segment
from billing.statements.statement import StatementLine


def required_minimum(
    segments: Sequence[Segment], month: RatedPeriod, plan_of: Callable[[str], Plan]
) -> Decimal | None:
    """The exact prorated minimum of the month; None when no plan in force has a commitment."""
    total, any_commitment = ZERO, False
    for seg in segments:
        minimum = plan_of(seg.plan).minimum_commitment
        if minimum is None:
            continue
        any_commitment = True
        if not seg.trial:
            total += minimum * seg.seconds / Decimal(month.whole_seconds)
    return total if any_commitment else None


def true_up_line(
    segments: Sequence[Segment],
    month: RatedPeriod,
    plan_of: Callable[[str], Plan],
    charged: Decimal,
    currency: str,
    period: tuple[object, object],
) -> StatementLine | None:
    required = required_minimum(segments, month, plan_of)
    if required is None:
        return None
    shortfall = round_minor(required, currency) - charged
    if shortfall <= 0:
        return None
    full = {plan_of(s.plan).minimum_commitment for s in segments} == {required}
    return line(
        currency,
        line_id="commitment:true_up",
        kind="commitment",
        plan=None,
        description=wording.commitment(required, charged, currency, prorated=not full),
        quantity=Decimal(1),
        unit_price=None,
        exact=required - charged,
        period_start=period[0],
        period_end=period[1],
    )
