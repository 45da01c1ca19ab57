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

_PROPERTY = "number_properties[{p:String}]"
_HAS_PROPERTY = "mapContains(number_properties, {p:String})"
_HAS_ANY = "(mapContains(string_properties, {p:String}) OR mapContains(number_properties, {p:String}))"
# an event counter a metric may read instead of a property (every event has it)
_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "tokens": "(input_tokens + output_tokens)",
    "bytes": "bytes",
    "queries": "queries",
}


def _aggregate(metric: MetricDefinition) -> tuple[str, str]:
    """(the value's expression, the count of events carrying what it reads)."""
    if metric.aggregation == "count":
        return "count()", "count()"
    if metric.field is not None:
        number, has = _FIELDS[metric.field], "1"
        key = f"(0, '', toDecimal256({number}, 18))"  # a counter is a number: (is text, text, number)
        any_value = "1"
    else:
        number, has = _PROPERTY, _HAS_PROPERTY
        key = f"(mapContains(string_properties, {{p:String}}), string_properties[{{p:String}}], {_PROPERTY})"
        any_value = _HAS_ANY
    if metric.aggregation == "sum":
        return f"sumIf(toDecimal256({number}, 18), {has})", f"countIf({has})"
    if metric.aggregation == "max":
        return f"maxIf({number}, {has})", f"countIf({has})"
    if metric.aggregation == "latest":
        # the last value: latest timestamp, ties broken by the greatest event_id (order-independent)
        return f"argMaxIf({number}, (timestamp, event_id), {has})", f"countIf({has})"
    # unique_count: a value is (is text, text, number), so the text "3" and the number 3 are two
    return f"uniqExactIf({key}, {any_value})", f"countIf({any_value})"


def metric_sql(metric: MetricDefinition) -> tuple[str, dict[str, Any]]:
    """The query (one row: the value, the number of events it read) and its fixed parameters."""
    value, carried = _aggregate(metric)
    where, parameters = metric_conditions(metric)
    sql = (
        f"SELECT {value}, {carried}\nFROM usage_events FINAL\n"
        "WHERE tenant_id = {t:String}\n"
        "  AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}\n"
        "  AND type IN {types:Array(String)}" + where
    )
    return sql, parameters


def metric_conditions(metric: MetricDefinition) -> tuple[str, dict[str, Any]]:
    """The metric's own conditions on an event (``AND ...`` after ``type IN {types}``) and their
    parameters (``types``, ``p`` the property read, ``models``, ``f{i}``/``v{i}`` the filters)."""
    parameters: dict[str, Any] = {"types": list(metric.event_types), "p": metric.property or ""}
    conditions = []
    if metric.models is not None:
        parameters["models"] = list(metric.models)
        conditions.append("model IN {models:Array(String)}")
    for i, rule in enumerate(metric.filters):
        parameters[f"f{i}"] = rule.property
        parameters[f"v{i}"] = list(rule.in_ or rule.not_in or [])
        holds = (
            f"(mapContains(string_properties, {{f{i}:String}}) "
            f"AND string_properties[{{f{i}:String}}] IN {{v{i}:Array(String)}})"
        )
        conditions.append(holds if rule.in_ is not None else f"NOT {holds}")
    return "".join(f"\n  AND {c}" for c in conditions), parameters


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
