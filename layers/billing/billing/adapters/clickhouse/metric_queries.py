"""A catalog metric's value for one tenant and period, computed by ClickHouse from ``usage_events``.

Invariants: each event counts once (``FINAL``: a copy stored twice is one event); the period is
``[start, end)`` on the event's ``timestamp``; numbers are exact (property numbers are
``Decimal(38, 18)``; a sum is taken in ``Decimal(76, 18)``, so no sum of fewer than 10^38 events can
overflow, and nothing passes through a float); the value reads only what is stored when the query
runs (a late event changes it when it is asked again). Property names are bound as parameters,
never spliced into the SQL.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.metrics import MetricDefinition

# Per aggregation: the value's expression and how many events carry what it reads.
_HAS_NUMBER = "mapContains(number_properties, {p:String})"
_NUMBER = "number_properties[{p:String}]"
_HAS_ANY = f"(mapContains(string_properties, {{p:String}}) OR {_HAS_NUMBER})"
_AGGREGATES = {
    "count": ("count()", "count()"),
    "sum": (f"sumIf(toDecimal256({_NUMBER}, 18), {_HAS_NUMBER})", f"countIf({_HAS_NUMBER})"),
    "max": (f"maxIf({_NUMBER}, {_HAS_NUMBER})", f"countIf({_HAS_NUMBER})"),
    # the last value: latest timestamp, ties broken by the greatest event_id (order-independent)
    "latest": (f"argMaxIf({_NUMBER}, (timestamp, event_id), {_HAS_NUMBER})", f"countIf({_HAS_NUMBER})"),
    # a value is (is text, text, number): the text "3" and the number 3 are two values
    "unique_count": (
        f"uniqExactIf((mapContains(string_properties, {{p:String}}), string_properties[{{p:String}}], "
        f"{_NUMBER}), {_HAS_ANY})",
        f"countIf({_HAS_ANY})",
    ),
}


def metric_sql(metric: MetricDefinition) -> tuple[str, dict[str, Any]]:
    """The query (one row: the value, the number of events it read) and its fixed parameters."""
    value, carried = _AGGREGATES[metric.aggregation]
    parameters: dict[str, Any] = {"types": list(metric.event_types), "p": metric.property or ""}
    conditions = []
    for i, rule in enumerate(metric.filters):
        parameters[f"f{i}"] = rule.property
        parameters[f"v{i}"] = list(rule.in_ or rule.not_in or [])
        holds = (
            f"(mapContains(string_properties, {{f{i}:String}}) "
            f"AND string_properties[{{f{i}:String}}] IN {{v{i}:Array(String)}})"
        )
        conditions.append(holds if rule.in_ is not None else f"NOT {holds}")
    where = "".join(f"\n  AND {c}" for c in conditions)
    sql = (
        f"SELECT {value}, {carried}\nFROM usage_events FINAL\n"
        "WHERE tenant_id = {t:String}\n"
        "  AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}\n"
        "  AND type IN {types:Array(String)}" + where
    )
    return sql, parameters


class ClickHouseMetrics:
    """Catalog metrics computed from the stored events."""

    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def value(
        self, metric: MetricDefinition, tenant_id: str, start: datetime, end: datetime
    ) -> Decimal | None:
        """The metric over the tenant's events of ``[start, end)``: ``count``, ``sum`` and
        ``unique_count`` are 0 when no event qualifies; ``max`` and ``latest`` are None when no
        qualifying event carries the property as a number (there is no value to take)."""
        sql, parameters = metric_sql(metric)
        [(value, carried)] = self.store.query(sql, {**parameters, "t": tenant_id, "start": start, "end": end})
        if metric.aggregation in ("max", "latest") and not carried:
            return None
        return Decimal(value)
