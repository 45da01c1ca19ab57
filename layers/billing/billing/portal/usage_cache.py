"""The usage page's per-day and per-model figures and its corrections block, cached per tenant and
period with the statement preview's stated staleness (``billing.portal.preview_cache``).

Rule (what cached figures may be served for):
- one cached entry per tenant and period (its key); it is served only for the same span of days
  (the period's start, the end of the days shown, the time zone, the current-or-past state: its
  digest) and the same tenant record (``inputs_digest``: a plan or calendar change reads again at
  once), and only while younger than ``max_age_s``. A new local day in the current period changes
  the span, so the first request of a day reads again.
- the figures are those read at ``computed_at`` (the page's "as of"): usage ingested and
  corrections applied after it appear at the latest ``max_age_s`` later.
- cached figures are exactly the read ones: counts as integers, costs as Decimal text, days and
  models in their order, corrections as the block's JSON rows (a round trip compares equal).
- ``refresh`` (the warmer's call) reads and caches them ahead of any request unless an entry of the
  same inputs is younger than ``keep_younger_than`` (a repeated run reads nothing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from billing.kernel.periods import iso, utc
from billing.portal.preview_cache import inputs_digest
from billing.portal.usage import DayUsage, ModelUsage, MonthRollup, Shown, UsageRollups, days_end, zone_of
from billing.tenants.tenant import Tenant

Corrections = Callable[[str, Shown], list[dict[str, Any]]]  # (tenant, period) -> the block's rows


@dataclass(frozen=True)
class CachedUsage:
    """The figures of one period as read at ``computed_at``, and what they were read for."""

    body: dict[str, Any]  # usage_json of the figures
    computed_at: datetime
    inputs_digest: str  # the tenant record's
    span_digest: str  # the days' span, zone and current-or-past state


class UsageFiguresStore(Protocol):
    def get(self, tenant_id: str, period: Shown) -> CachedUsage | None: ...

    def put(self, tenant_id: str, period: Shown, cached: CachedUsage) -> None: ...


@dataclass(frozen=True)
class UsageFigures:
    rollup: MonthRollup
    corrections: list[dict[str, Any]]
    as_of: datetime  # when they were read


def span_digest(period: Shown, now: datetime) -> str:
    """Digest of what the figures cover besides usage: the days' span, the zone, current or past."""
    text = json.dumps([iso(period.start), iso(days_end(period, now)), zone_of(period), period.contains(now)])
    return hashlib.sha256(text.encode()).hexdigest()


def usage_json(figures: UsageFigures) -> dict[str, Any]:
    """The figures, exactly: costs as Decimal text, days and models in order."""
    return {
        "days": [[d.day.isoformat(), d.queries, str(d.cost_usd)] for d in figures.rollup.days],
        "models": [
            [m.model, m.events, m.queries, m.input_tokens, m.output_tokens, str(m.cost_usd)]
            for m in figures.rollup.models
        ],
        "corrections": figures.corrections,
    }


def usage_from_json(body: dict[str, Any], as_of: datetime) -> UsageFigures:
    days = [DayUsage(date.fromisoformat(d), int(q), Decimal(c)) for d, q, c in body["days"]]
    models = [
        ModelUsage(str(name), int(e), int(q), int(i), int(o), Decimal(c))
        for name, e, q, i, o, c in body["models"]
    ]
    return UsageFigures(MonthRollup(days, models), list(body["corrections"]), as_of)


class CachedUsageFigures:
    """The page's per-day, per-model and corrections figures: a fresh cached entry of the same
    inputs, or read (then cached)."""

    def __init__(
        self,
        *,
        rollups: UsageRollups,
        corrections: Corrections | None,
        store: UsageFiguresStore,
        clock: Callable[[], datetime],
        max_age_s: int,
    ):
        self.rollups = rollups
        self.corrections = corrections
        self.store = store
        self.clock = clock
        self.max_age = timedelta(seconds=max_age_s)

    def serve(
        self, tenant: Tenant, period: Shown, cached: CachedUsage | None, *, digest: str | None = None
    ) -> UsageFigures:
        """The figures of ``period`` as of now, given the entry already read (``cached``, None:
        none stored) and the tenant record it must have been read for (``digest``: its
        ``inputs_digest``, computed once per request by the caller)."""
        now = utc(self.clock())
        digests = (digest or inputs_digest(tenant), span_digest(period, now))
        if self._fresh(cached, digests, now, self.max_age):
            assert cached is not None
            return usage_from_json(cached.body, cached.computed_at)
        return self._read(tenant.id, period, digests, now)

    def refresh(self, tenant: Tenant, period: Shown, *, keep_younger_than: timedelta) -> UsageFigures | None:
        """Read and cache the figures now; None when an entry of the same inputs is younger than
        ``keep_younger_than`` (or caching is off): nothing read."""
        if self.max_age <= timedelta(0):
            return None
        now = utc(self.clock())
        digests = (inputs_digest(tenant), span_digest(period, now))
        cached = self.store.get(tenant.id, period)
        if self._fresh(cached, digests, now, min(keep_younger_than, self.max_age)):
            return None
        return self._read(tenant.id, period, digests, now)

    @staticmethod
    def _fresh(
        cached: CachedUsage | None, digests: tuple[str, str], now: datetime, younger_than: timedelta
    ) -> bool:
        return (
            cached is not None
            and younger_than > timedelta(0)
            and (cached.inputs_digest, cached.span_digest) == digests
            and now - cached.computed_at < younger_than
        )

    def _read(self, tenant_id: str, period: Shown, digests: tuple[str, str], now: datetime) -> UsageFigures:
        rollup = self.rollups.period(tenant_id, period.start, days_end(period, now), zone_of(period))
        corrections = self.corrections(tenant_id, period) if self.corrections is not None else []
        figures = UsageFigures(rollup, corrections, now)
        if self.max_age > timedelta(0):
            self.store.put(tenant_id, period, CachedUsage(usage_json(figures), now, *digests))
        return figures
