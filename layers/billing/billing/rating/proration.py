"""Base fees prorated by the second.

Invariant: a month on one plan is charged exactly ``base_fee`` (28-31 days and leap years alike); trial
seconds are free; a plan's fee runs over the maximal intervals it is in force, one line per interval.
A line's quantity is 1 (one fee); the seconds it charges and the month's seconds are kept on the line
(``prorated_seconds``, ``month_seconds``) for audit, and its description says the days.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from billing.catalog.plans import Plan
from billing.kernel.money import ZERO
from billing.kernel.periods import RatedPeriod
from billing.rating import wording
from billing.rating.lines import line
from billing.rating.segments import Segment
from billing.statements.statement import StatementLine


def base_fee_lines(
    segments: list[Segment], month: RatedPeriod, plan_of: Callable[[str], Plan], currency: str = "usd"
) -> list[StatementLine]:
    """One line per maximal interval of one plan: ``base_fee x non-trial seconds / seconds in the month``."""
    runs: list[list[Segment]] = []
    for seg in segments:
        if runs and runs[-1][-1].plan == seg.plan and runs[-1][-1].end == seg.start:
            runs[-1].append(seg)
        else:
            runs.append([seg])
    lines = []
    ordinal: dict[str, int] = {}
    month_seconds = Decimal(month.whole_seconds)
    for run in runs:
        plan = plan_of(run[0].plan)
        ordinal[plan.id] = ordinal.get(plan.id, 0) + 1
        seconds = sum((s.seconds for s in run if not s.trial), ZERO)
        exact = plan.base_fee * seconds / month_seconds
        start, end = run[0].start, run[-1].end
        trial = [s for s in run if s.trial]
        lines.append(
            line(
                currency,
                line_id=f"base:{plan.id}:{ordinal[plan.id]}",
                kind="base_fee",
                plan=plan.id,
                description=wording.base_fee(
                    plan.name,
                    month.local(start),
                    month.local(end),
                    seconds=seconds,
                    month_seconds=month.whole_seconds,
                    trial_until=month.local(trial[-1].end) if trial else None,
                ),
                quantity=Decimal(1),
                unit_price=None,
                exact=exact,
                period_start=start,
                period_end=end,
                prorated_seconds=seconds,
                month_seconds=month.whole_seconds,
            )
        )
    return lines
