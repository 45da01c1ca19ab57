"""The usage page's per-metric figures: each catalog metric a tenant's plans charge this month, its
period-to-date quantity, one row per group when the charge groups (or prices) by a property.

Invariants:
- a metric is shown with the groups its charge bills by (``group_by``, or the ``price_by`` property),
  in the words the statement lines use (``gpu: h100, region: eu``; a missing value is ``none``);
- the quantity of a group is the metric's aggregation over the tenant's events of the period so far
  (``billing.catalog.metrics``), read from the per-metric daily rollup, never a scan of raw events
  (``billing.adapters.clickhouse.metric_rollups`` says which aggregations read which source);
- a ``max`` or ``latest`` no event has given a value to yet is ``None`` (shown as "no value yet").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from billing.catalog.metrics import MetricDefinition
from billing.catalog.plans import PlanCatalog
from billing.kernel.calendar import DEFAULT_TIME_ZONE, Period, local_midnight, zone
from billing.kernel.periods import Month, utc
from billing.tenants.tenant import Tenant

Group = tuple[str, ...]  # the group_by properties' values, in order; () ungrouped


@dataclass(frozen=True)
class MetricAsk:
    """A metric the page shows, and the text properties its rows are split by."""

    metric: MetricDefinition
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupUsage:
    values: Group
    quantity: Decimal | None  # None: no event carried a value yet (max, latest)
    days: dict[date, Decimal | None] = field(default_factory=dict, compare=False)

    def words(self, names: Sequence[str]) -> str:
        """``gpu: h100, region: eu`` (as the statement's grouped lines say it)."""
        return ", ".join(f"{name}: {value or 'none'}" for name, value in zip(names, self.values, strict=True))


@dataclass(frozen=True)
class MetricUsage:
    metric: MetricDefinition
    group_by: tuple[str, ...]
    groups: list[GroupUsage]  # ungrouped: one row, values (); grouped: one per value seen, by value

    @property
    def total(self) -> Decimal | None:
        """The ungrouped quantity (the single row's); a grouped metric's rows are each their own."""
        return self.groups[0].quantity if not self.group_by and self.groups else None

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric.id,
            "name": self.metric.name,
            "unit": self.metric.unit,
            "aggregation": self.metric.aggregation,
            "group_by": list(self.group_by),
            "groups": [
                {
                    "values": dict(zip(self.group_by, g.values, strict=True)),
                    "label": g.words(self.group_by) if self.group_by else "",
                    "quantity": None if g.quantity is None else _plain(g.quantity),
                }
                for g in self.groups
            ],
        }


def _plain(value: Decimal) -> str:
    """An exact quantity without padding zeros (``12.5``, ``3``)."""
    return f"{value.normalize():f}" if value != value.to_integral_value() else f"{int(value)}"


class MetricFigures(Protocol):
    def month(
        self,
        tenant_id: str,
        asked: Sequence[MetricAsk],
        start: datetime,
        end: datetime,
        *,
        daily: bool = False,
        zone: str = DEFAULT_TIME_ZONE,
    ) -> list[MetricUsage]:
        """Each asked metric over the tenant's events of ``[start, end)``, per group (and per local
        day in ``zone`` with ``daily``)."""
        ...


@dataclass(frozen=True)
class LocalDay:
    """A day as a tenant in ``zone`` reads it, cut to the span asked: ``[start, end)`` in UTC."""

    day: date
    start: datetime
    end: datetime


def local_days(start: datetime, end: datetime, time_zone: str) -> list[LocalDay]:
    """The local days of ``time_zone`` overlapping ``[start, end)``, in order, each cut to it (the
    first starts at ``start``, the last ends at ``end``): they tile the span exactly."""
    start, end = utc(start), utc(end)
    day = start.astimezone(zone(time_zone)).date()
    days: list[LocalDay] = []
    while True:
        begins, ends = (
            max(start, local_midnight(day, time_zone)),
            min(end, local_midnight(day + timedelta(days=1), time_zone)),
        )
        if begins >= end:
            return days
        days.append(LocalDay(day, begins, ends))
        day += timedelta(days=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(instant: datetime) -> int:
    """Milliseconds since the epoch (exact: no float)."""
    return (utc(instant) - _EPOCH) // timedelta(milliseconds=1)


def metrics_shown(tenant: Tenant, catalog: PlanCatalog, month: Month | Period) -> list[MetricAsk]:
    """The catalog metrics charged by a plan the tenant holds during ``month`` (a period), each once per
    distinct grouping (the plans' order, then the charges'). Built-in metrics are left out: the
    cards, charts and model table show them already."""
    shown: list[MetricAsk] = []
    for plan_id in _plans_in(tenant, month):
        if plan_id not in catalog:
            continue
        for charge in catalog.get(plan_id).charges:
            try:
                metric = catalog.metric(charge.metric)
            except KeyError:
                continue  # a built-in metric
            by = (charge.price_by.property,) if charge.price_by is not None else tuple(charge.group_by)
            ask = MetricAsk(metric, by)
            if ask not in shown:
                shown.append(ask)
    return shown


def _plans_in(tenant: Tenant, month: Month | Period) -> list[str]:
    """The plan in force when the period opens, then each plan taking effect within it."""
    plans = [p for p in [tenant.plan_at(month.start)] if p is not None]
    for assignment in tenant.sorted_plans():
        if month.start < assignment.effective_at < month.end and assignment.plan not in plans:
            plans.append(assignment.plan)
    return plans
