"""A catalog metric's value for one tenant and period, computed by ClickHouse from ``usage_events``.

Invariants: each event counts once (``FINAL``: a copy stored twice is one event), as corrected
(``live_rows``: a voided event is not read, an amended one is read as amended); the period is
``[start, end)`` on the event's ``timestamp``; numbers are exact (property numbers are
``Decimal(38, 18)``; a sum is taken in ``Decimal(76, 18)``, so no sum of fewer than 10^38 events can
overflow, and nothing passes through a float); the value reads only what is stored when the query
runs (a late event changes it when it is asked again). A time-weighted sum also reads the last
qualifying event before the period (what is held when it opens); ClickHouse sums value x
milliseconds exactly, and the one division into the metric's time unit is done here, rounded
half-even to 18 places. Property names are bound as parameters, never spliced into the SQL.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.metrics import MILLISECONDS_PER, MetricDefinition

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


def live_rows(tenants: str, stored: str = "") -> str:
    """The condition (``AND ...``) keeping the live rows of ``usage_events``: not a void
    (``sign = -1``), and not a row some void negates (``corrects``, migration 0007). ``tenants`` is a
    condition on ``tenant_id`` narrowing the voids read; ``stored`` one on their ``stored_at`` (a
    statement's cutoff: a void stored after it is late, the row it negates still counted).
    Max, latest and unique counts read these rows, so a voided event never holds a maximum or a
    last value, and an amended one holds its new values; counts and sums over them equal the
    signed sums."""
    return (
        " AND sign = 1 AND (tenant_id, event_id) NOT IN (SELECT tenant_id, corrects FROM usage_events "
        f"WHERE sign = -1 AND {tenants}{stored})"
    )


def metric_conditions(metric: MetricDefinition) -> tuple[str, dict[str, Any]]:
    """The conditions (``\n  AND ...``, after the tenant's) an event meets to be read, and their
    parameters (``types``, ``p`` the property read, ``models``, ``f{i}``/``v{i}`` the filters)."""
    parameters: dict[str, Any] = {"types": list(metric.event_types), "p": metric.property or ""}
    conditions = ["type IN {types:Array(String)}"]
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


_START = "{start:DateTime64(3, 'UTC')}"
_LIVE = live_rows("tenant_id = {t:String}")
_END = "{end:DateTime64(3, 'UTC')}"


def metric_sql(metric: MetricDefinition) -> tuple[str, dict[str, Any]]:
    """The query (one row: the value, the number of events it read) and its fixed parameters."""
    if metric.aggregation == "time_weighted_sum":
        return time_weighted_sql(metric)
    value, carried = _aggregate(metric)
    where, parameters = metric_conditions(metric)
    sql = (
        f"SELECT {value}, {carried}\nFROM usage_events FINAL\n"
        "WHERE tenant_id = {t:String}\n"
        f"  AND timestamp >= {_START} AND timestamp < {_END}" + where + _LIVE
    )
    return sql, parameters


def time_weighted_sql(metric: MetricDefinition) -> tuple[str, dict[str, Any]]:
    """One row: the exact sum of value x milliseconds held in ``[start, end)``, and the number of
    events read (the period's, and the one carried in from before it, if any).

    The events are the period's plus the last one before it, ordered by (timestamp, event_id); each
    holds from its timestamp (the period's start for the one carried in) to the next one's, the last
    to the period's end. Ties hold for 0 ms, so the greatest event_id at an instant is what holds."""
    where, parameters = metric_conditions(metric)
    where += f"\n  AND {_HAS_PROPERTY}{_LIVE}"
    read = (
        f"SELECT toDecimal256({_PROPERTY}, 18) AS v, toUnixTimestamp64Milli(timestamp) AS ms, event_id\n"
        "FROM usage_events FINAL\nWHERE tenant_id = {t:String}\n"
    )
    sql = (
        "SELECT sum(v * (next_ms - greatest(ms, start_ms))), count()\nFROM (\n"
        f"SELECT v, ms, toUnixTimestamp64Milli({_START}) AS start_ms,\n"
        f"  leadInFrame(ms, 1, toUnixTimestamp64Milli({_END})) OVER (\n"
        "    ORDER BY ms, event_id ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_ms\n"
        "FROM (\n"
        f"{read}  AND timestamp >= {_START} AND timestamp < {_END}{where}\n"
        "UNION ALL\n"
        f"SELECT * FROM ({read}  AND timestamp < {_START}{where}\n"
        "  ORDER BY timestamp DESC, event_id DESC LIMIT 1)\n"
        "))"
    )
    return sql, parameters


# enough digits that expressing value x milliseconds in the time unit rounds only at the 18th place
_EXPRESS = Context(prec=120, rounding=ROUND_HALF_EVEN)
_PLACES = Decimal(1).scaleb(-18)


class ClickHouseMetrics:
    """Catalog metrics computed from the stored events."""

    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def value(
        self, metric: MetricDefinition, tenant_id: str, start: datetime, end: datetime
    ) -> Decimal | None:
        """The metric over the tenant's events of ``[start, end)``: ``count``, ``sum`` and
        ``unique_count`` are 0 when no event qualifies; ``max`` and ``latest`` are None when no
        qualifying event carries the property as a number (there is no value to take); a
        ``time_weighted_sum`` is 0 when nothing is held in the period."""
        sql, parameters = metric_sql(metric)
        [(value, carried)] = self.store.query(sql, {**parameters, "t": tenant_id, "start": start, "end": end})
        if metric.aggregation == "time_weighted_sum":
            assert metric.per is not None  # the catalog's validation requires it
            held = _EXPRESS.divide(Decimal(value), MILLISECONDS_PER[metric.per])
            return _EXPRESS.quantize(held, _PLACES)
        if metric.aggregation in ("max", "latest") and not carried:
            return None
        return Decimal(value)
