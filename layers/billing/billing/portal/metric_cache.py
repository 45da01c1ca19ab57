"""The usage page's per-metric figures (``billing.portal.metrics``), cached per tenant and period with
the statement preview's stated staleness (``billing.portal.preview_cache``).

Rule (what cached figures may be served for):
- one cached entry per tenant and period (its key); it is served only for the same asked metrics
  and groupings (their digest: a catalog change to a metric or a charge's grouping is a miss), the
  same time zone, the same current-or-past state of the period, and the same tenant record
  (``inputs_digest``: a plan change invalidates at once), and only while younger than ``max_age_s``.
  Every period follows this one rule: a past period can still gain late events and corrections, so
  its figures are no more final than the current one's.
- the current period's figures run to the moment they were computed (``as_of``): usage ingested
  after it appears at the latest ``max_age_s`` later, and the page says "as of HH:MM" for them.
- cached figures are exactly the computed ones: quantities as Decimal text, ``None`` kept as
  ``None``, groups and per-day figures in their order (a round trip compares equal, days included).
- ``refresh`` (the warmer's call) computes and caches the figures ahead of any request unless an
  entry of the same inputs is younger than ``keep_younger_than`` (a repeated run computes nothing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from billing.kernel.calendar import Period
from billing.kernel.periods import Month, utc
from billing.portal.metrics import GroupUsage, MetricAsk, MetricFigures, MetricUsage
from billing.portal.preview_cache import inputs_digest
from billing.tenants.tenant import Tenant, unknown_tenant


@dataclass(frozen=True)
class CachedFigures:
    """The figures of one period as computed at ``computed_at``, and what they were computed for."""

    figures: list[dict[str, Any]]  # figures_json of the computed list
    computed_at: datetime
    inputs_digest: str  # the tenant record's
    asked_digest: str  # the asked metrics, groupings, zone and current-or-past state


class MetricFiguresStore(Protocol):
    def get(self, tenant_id: str, period: Month | Period) -> CachedFigures | None: ...

    def put(self, tenant_id: str, period: Month | Period, cached: CachedFigures) -> None: ...


def asked_digest(asked: Sequence[MetricAsk], zone: str, current: bool) -> str:
    """Digest of everything besides usage and the tenant record the figures depend on."""
    text = json.dumps(
        {
            "asked": [[a.metric.model_dump(mode="json"), list(a.group_by)] for a in asked],
            "zone": zone,
            "current": current,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def figures_json(figures: Sequence[MetricUsage]) -> list[dict[str, Any]]:
    """The figures, exactly: Decimals as text, None as null, days keyed by ISO date in order."""
    return [
        {
            "metric": usage.metric.id,
            "group_by": list(usage.group_by),
            "groups": [
                {
                    "values": list(g.values),
                    "quantity": _text(g.quantity),
                    "days": [[day.isoformat(), _text(q)] for day, q in g.days.items()],
                }
                for g in usage.groups
            ],
        }
        for usage in figures
    ]


def figures_from_json(data: Sequence[dict[str, Any]], asked: Sequence[MetricAsk]) -> list[MetricUsage]:
    """The figures ``figures_json`` wrote, their metric definitions from ``asked`` (the same asked
    digest: one entry per ask, in its order)."""
    definitions = {a.metric.id: a.metric for a in asked}
    return [
        MetricUsage(
            metric=definitions[entry["metric"]],
            group_by=tuple(entry["group_by"]),
            groups=[
                GroupUsage(
                    values=tuple(g["values"]),
                    quantity=_decimal(g["quantity"]),
                    days={date.fromisoformat(day): _decimal(q) for day, q in g["days"]},
                )
                for g in entry["groups"]
            ],
        )
        for entry in data
    ]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


@dataclass(frozen=True)
class Figures:
    usage: list[MetricUsage]
    as_of: datetime  # when they were computed (to then, in the current period)


class CachedMetricFigures:
    """The page's per-metric figures: a fresh cached entry of the same inputs, or computed (then cached)."""

    def __init__(
        self,
        *,
        figures: MetricFigures,
        store: MetricFiguresStore,
        tenant: Callable[[str], Tenant | None],
        clock: Callable[[], datetime],
        max_age_s: int,
    ):
        self.figures = figures
        self.store = store
        self.tenant = tenant
        self.clock = clock
        self.max_age = timedelta(seconds=max_age_s)

    def period(
        self, tenant_id: str, period: Month | Period, asked: Sequence[MetricAsk], *, zone: str
    ) -> Figures:
        """The asked metrics over the period: to now in the current period (as of their computation
        when cached), else the whole period."""
        now = utc(self.clock())
        current = period.contains(now)
        digests = self._digests(tenant_id, asked, zone, current)
        cached = self._cached(tenant_id, period, digests, now, self.max_age)
        if cached is not None:
            return Figures(figures_from_json(cached.figures, asked), cached.computed_at)
        return self._compute(tenant_id, period, asked, zone, current, digests, now)

    def serve(
        self,
        tenant: Tenant,
        period: Month | Period,
        asked: Sequence[MetricAsk],
        cached: CachedFigures | None,
        *,
        zone: str,
        digest: str | None = None,
    ) -> Figures:
        """The same rule as ``period``, given the entry already read (one batched read of the
        page; None: none stored) and the tenant record (``digest``: its ``inputs_digest``)."""
        now = utc(self.clock())
        current = period.contains(now)
        digests = (digest or inputs_digest(tenant), asked_digest(asked, zone, current))
        if self._fresh(cached, digests, now, self.max_age):
            assert cached is not None
            return Figures(figures_from_json(cached.figures, asked), cached.computed_at)
        return self._compute(tenant.id, period, asked, zone, current, digests, now)

    def refresh(
        self,
        tenant_id: str,
        period: Month | Period,
        asked: Sequence[MetricAsk],
        *,
        zone: str,
        keep_younger_than: timedelta,
    ) -> Figures | None:
        """Compute and cache the figures now; None when an entry of the same inputs is younger than
        ``keep_younger_than`` (or caching is off): nothing computed."""
        if self.max_age <= timedelta(0) or not asked:
            return None
        now = utc(self.clock())
        current = period.contains(now)
        digests = self._digests(tenant_id, asked, zone, current)
        if self._cached(tenant_id, period, digests, now, min(keep_younger_than, self.max_age)) is not None:
            return None
        return self._compute(tenant_id, period, asked, zone, current, digests, now)

    def _digests(
        self, tenant_id: str, asked: Sequence[MetricAsk], zone: str, current: bool
    ) -> tuple[str, str]:
        tenant = self.tenant(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        return inputs_digest(tenant), asked_digest(asked, zone, current)

    def _cached(
        self,
        tenant_id: str,
        period: Month | Period,
        digests: tuple[str, str],
        now: datetime,
        younger_than: timedelta,
    ) -> CachedFigures | None:
        if younger_than <= timedelta(0):
            return None
        cached = self.store.get(tenant_id, period)
        return cached if self._fresh(cached, digests, now, younger_than) else None

    @staticmethod
    def _fresh(
        cached: CachedFigures | None, digests: tuple[str, str], now: datetime, younger_than: timedelta
    ) -> bool:
        return (
            cached is not None
            and younger_than > timedelta(0)
            and (cached.inputs_digest, cached.asked_digest) == digests
            and now - cached.computed_at < younger_than
        )

    def _compute(
        self,
        tenant_id: str,
        period: Month | Period,
        asked: Sequence[MetricAsk],
        zone: str,
        current: bool,
        digests: tuple[str, str],
        now: datetime,
    ) -> Figures:
        end = min(now, period.end) if current else period.end
        usage = self.figures.month(tenant_id, asked, period.start, end, zone=zone)
        if self.max_age > timedelta(0):
            self.store.put(tenant_id, period, CachedFigures(figures_json(usage), now, *digests))
        return Figures(usage, now)
