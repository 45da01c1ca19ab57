"""The window a tenant's query quota counts in: its billing period, in its own time zone.

A tenant on the default calendar counts per UTC calendar month (counter key ``YYYY-MM``, as always);
a tenant with a calendar counts per its own period (billing.kernel.calendar), keyed by the period's
key (``YYYY-MM`` when the period is exactly a UTC month, else its UTC start and end instants), so the
quota resets at the tenant's period start: at local midnight on the 1st for a calendar month in
``Asia/Kolkata`` (18:30 UTC), on the anniversary for an anniversary tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing.kernel.periods import Month
from billing.tenants.closed_periods import has_own_periods
from billing.tenants.tenant import Tenant


@dataclass(frozen=True)
class QuotaWindow:
    key: str  # the quota counter's period key
    start: datetime
    end: datetime  # exclusive: when the quota resets


def quota_window(tenant: Tenant | None, instant: datetime) -> QuotaWindow:
    """The window holding ``instant`` for ``tenant`` (a UTC month for None or the default calendar)."""
    if tenant is None or not has_own_periods(tenant):
        month = Month.of(instant)
        return QuotaWindow(str(month), month.start, month.end)
    period = tenant.calendar_history().period_of(instant)
    return QuotaWindow(period.key, period.start, period.end)
