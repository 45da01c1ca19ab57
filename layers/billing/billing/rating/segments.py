"""The statement period and its pricing segments.

Invariants: segments are half-open ``[start, end)``, tile the period (the month, ending early at a
cancellation) from the tenant's first plan on, and each has one plan and one trial state; an entry that
repeats the plan in force cuts nothing; an instant exactly at a boundary belongs to the later segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from billing.kernel.periods import Month, RatedPeriod, utc
from billing.tenants.tenant import Tenant


@dataclass(frozen=True)
class Segment:
    """A maximal interval [start, end) of the statement period with one plan and one trial state."""

    start: datetime
    end: datetime
    plan: str
    trial: bool

    @property
    def seconds(self) -> Decimal:
        return seconds_between(self.start, self.end)


def seconds_between(start: datetime, end: datetime) -> Decimal:
    micro = (end - start) // timedelta(microseconds=1)
    return Decimal(micro) / Decimal(1_000_000)


def statement_period(tenant: Tenant, month: RatedPeriod) -> tuple[datetime, datetime] | None:
    """[start, end) of the tenant's statement for ``month``; None when it has nothing to bill (not
    subscribed yet, or cancelled before the month began)."""
    first = tenant.first_plan_at()
    if first is None or first >= month.end:
        return None
    end = month.end
    if tenant.canceled_at is not None:
        canceled = utc(tenant.canceled_at)
        if canceled <= month.start:
            return None
        end = min(end, canceled)
    return month.start, end


def is_final(tenant: Tenant, month: RatedPeriod) -> bool:
    """The month's statement is the tenant's last: it is cancelled after the month began and by its end."""
    return tenant.canceled_at is not None and month.start < utc(tenant.canceled_at) <= month.end


def final_month(tenant: Tenant) -> Month | None:
    """The month of the final statement (a cancellation at 00:00 on the 1st ends the month before)."""
    if tenant.canceled_at is None:
        return None
    month = Month.of(tenant.canceled_at)
    return month.previous() if utc(tenant.canceled_at) == month.start else month


def pricing_segments(tenant: Tenant, month: RatedPeriod) -> list[Segment]:
    period = statement_period(tenant, month)
    if period is None:
        return []
    start, end = period
    cuts = {start, end}
    cuts.update(utc(p.effective_at) for p in tenant.plans if start < utc(p.effective_at) < end)
    if tenant.trial_ends_at is not None and start < utc(tenant.trial_ends_at) < end:
        cuts.add(utc(tenant.trial_ends_at))
    points = sorted(cuts)
    segments: list[Segment] = []
    for a, b in zip(points, points[1:]):
        plan = tenant.plan_at(a)
        if plan is None:
            continue
        trial = tenant.in_trial(a)
        last = segments[-1] if segments else None
        if last is not None and last.end == a and last.plan == plan and last.trial == trial:
            segments[-1] = Segment(last.start, b, plan, trial)
        else:
            segments.append(Segment(a, b, plan, trial))
    return segments
