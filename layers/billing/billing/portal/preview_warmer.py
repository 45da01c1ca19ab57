"""The usage page's previews kept warm: a scheduled run rates each active tenant's month-to-date
preview into the cache before the one there expires, so a page request for an active tenant reads
the cache and never rates (billing.portal.preview_cache).

Rule (one run, at ``now``):
- each tenant's preview is of the period its page shows now (``period_of``): its UTC month, or
  its own calendar's period for a tenant with a calendar.
- the tenants warmed are those with usage in the current UTC month in the hour buckets from
  ``now - window`` on (one query over the hourly rollup), the most events first: their misses cost
  the most.
- each one's preview is rated and cached as of the moment its rating starts, unless its cached
  preview of the same inputs is younger than ``keep_younger_than`` (a run repeated, or a page request
  that just rated it): a second run right after the first rates nothing (idempotent).
- at most ``max_tenants`` are rated, and none is started once ``budget_s`` seconds have passed; the
  others are skipped (the run names them; the handler logs them) and a page request for them rates on a miss as before.
- each tenant's per-metric figures (billing.portal.metric_cache) are refreshed right after its
  preview (warmed or kept; not for one with nothing to bill: no plan charges a metric), by the same keep rule (``figures``; within the same bounds: the budget is checked
  before each tenant, never between its two parts).
- each tenant's per-day and per-model figures and corrections block (billing.portal.usage_cache) are
  refreshed right after its preview the same way (``usage``; also for a tenant with nothing to
  bill: its page shows its usage all the same).
- a tenant with nothing to bill (NotFound) is named as such; one whose month is stored is kept; a
  store or ClickHouse failure fails the run (the next run starts over).

Why this keeps every active tenant's preview fresh: a preview rated at ``t`` is served until
``t + max_age``; the next run starts one schedule interval later and reaches the tenant within its
budget plus one rating, so ``interval + budget + one rating < max_age`` is what the schedule and
settings must keep (the container derives ``keep_younger_than`` from them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from billing.kernel.calendar import Period
from billing.kernel.errors import NotFound
from billing.kernel.periods import Month, utc
from billing.portal.preview_cache import CachedStatements


class ActiveTenants(Protocol):
    def since(self, start: datetime, month: Month) -> list[str]:
        """Tenants with usage in ``month`` in the hour buckets from ``start``'s on, most events first."""
        ...


@dataclass
class WarmRun:
    month: str
    warmed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # a young enough cached preview, or a stored statement
    nothing_to_bill: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # over the run's bounds, left to a request
    figures_warmed: list[str] = field(default_factory=list)  # per-metric figures computed and cached
    usage_warmed: list[str] = field(default_factory=list)  # per-day and per-model figures read and cached

    def summary(self) -> dict[str, object]:
        return {
            "month": self.month,
            "warmed": len(self.warmed),
            "kept": len(self.kept),
            "nothing_to_bill": len(self.nothing_to_bill),
            "skipped": len(self.skipped),
            "figures_warmed": len(self.figures_warmed),
            "usage_warmed": len(self.usage_warmed),
        }


class PreviewWarmer:
    def __init__(
        self,
        *,
        active: ActiveTenants,
        statements: CachedStatements,
        clock: Callable[[], datetime],
        window: timedelta,
        keep_younger_than: timedelta,
        max_tenants: int,
        budget_s: float,
        timer: Callable[[], float] = time.monotonic,
        period_of: Callable[[str, datetime], Month | Period] | None = None,
        figures: Callable[[str, Month | Period, timedelta], bool] | None = None,
        usage: Callable[[str, Month | Period, timedelta], bool] | None = None,
    ):
        # (tenant, period, keep_younger_than) -> whether per-day and per-model figures were read and cached
        self.usage = usage
        # (tenant, period, keep_younger_than) -> whether per-metric figures were computed and cached
        self.figures = figures
        self.period_of = period_of or (lambda _tenant_id, now: Month.of(now))
        self.active = active
        self.statements = statements
        self.clock = clock
        self.window = window
        self.keep_younger_than = keep_younger_than
        self.max_tenants = max_tenants
        self.budget_s = budget_s
        self.timer = timer

    def run(self) -> WarmRun:
        now = utc(self.clock())
        month = Month.of(now)
        tenants = self.active.since(now - self.window, month)
        result = WarmRun(str(month))
        started = self.timer()
        for index, tenant_id in enumerate(tenants):
            if len(result.warmed) >= self.max_tenants or self.timer() - started >= self.budget_s:
                result.skipped = tenants[index:]
                break
            period = self.period_of(tenant_id, now)
            try:
                served = self.statements.refresh(tenant_id, period, keep_younger_than=self.keep_younger_than)
            except NotFound:
                result.nothing_to_bill.append(tenant_id)
                self._usage(result, tenant_id, period)
                continue
            (result.warmed if served is not None else result.kept).append(tenant_id)
            self._usage(result, tenant_id, period)
            if self.figures is not None and self.figures(tenant_id, period, self.keep_younger_than):
                result.figures_warmed.append(tenant_id)
        return result

    def _usage(self, result: WarmRun, tenant_id: str, period: Month | Period) -> None:
        if self.usage is not None and self.usage(tenant_id, period, self.keep_younger_than):
            result.usage_warmed.append(tenant_id)
