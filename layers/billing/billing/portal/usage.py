"""The usage page's per-day and per-model figures: their types, the rollup read that gives them
(``UsageRollups``, the ClickHouse adapter ``billing.adapters.clickhouse.portal_queries``) and the
days a page shows.

Invariants:
- a period's days are the local days of its time zone, from its start to the end of today (local)
  in the current period, else to its end (``days_end``); every day in that span is listed, zeros
  included;
- figures are exact: counts as ints, costs as Decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from billing.kernel.calendar import DEFAULT_TIME_ZONE, Period, local_midnight
from billing.kernel.periods import Month

Shown = Month | Period  # a UTC calendar month (the default calendar), or a period of the tenant's calendar


def zone_of(shown: Shown) -> str:
    """The time zone a period is read in (a UTC month's is UTC)."""
    return shown.calendar.time_zone if isinstance(shown, Period) else DEFAULT_TIME_ZONE


def days_end(shown: Shown, now: datetime) -> datetime:
    """Where the page's days end: the end of today (local) in the current period, else its end."""
    if not shown.contains(now):
        return shown.end
    today = shown.local(now).date() if isinstance(shown, Period) else now.date()
    return min(shown.end, local_midnight(today + timedelta(days=1), zone_of(shown)))


@dataclass(frozen=True)
class DayUsage:
    day: date
    queries: int
    cost_usd: Decimal


@dataclass(frozen=True)
class ModelUsage:
    model: str  # "" for storage-only events
    events: int
    queries: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class MonthRollup:
    """One period of a tenant from the rollup: per day (every day present, zeros included) and per model."""

    days: list[DayUsage]
    models: list[ModelUsage]


class UsageRollups(Protocol):
    def period(self, tenant_id: str, start: datetime, end: datetime, zone: str) -> MonthRollup:
        """Per local day of ``zone`` overlapping ``[start, end)`` (zeros included), and per model."""
        ...
