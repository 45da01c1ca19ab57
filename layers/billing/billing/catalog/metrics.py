"""Catalog metrics: what a usage measure is, defined in the catalog next to the plans (the ``metrics``
key of the plans file), over the events' type and properties.

A metric reads the events of a tenant in a period (each event once) whose ``type`` is one of its
``event_types`` and whose text properties pass every filter, and aggregates them:

- ``count``: the number of those events;
- ``sum``, ``max``: of the numeric ``property`` over the events carrying it as a number;
- ``latest``: the numeric ``property`` of the last such event (latest ``timestamp``; a tie is broken
  by the greatest ``event_id``, so the value does not depend on arrival order);
- ``unique_count``: the number of distinct values of ``property`` (text or number; the text ``"3"``
  and the number 3 are two values; 3 and 3.0 are one);
- ``time_weighted_sum`` (a gauge: storage held, seats held): the integral over the period of the
  step function the numeric ``property`` draws, in value x ``per`` (``second``, ``minute``, ``hour``
  or ``day``; a metric of GB values ``per: hour`` is in GB-hours). Each event sets the value from its
  ``timestamp`` until the next event's (events ordered by ``timestamp`` then ``event_id``, so of
  events at one instant the greatest ``event_id`` holds and the others hold for no time) or the
  period's end. The last event before the period's start (however long before) holds from the start
  until the first event of the period: what is held when the period opens is billed from its first
  millisecond. Before any event nothing is held. Time is exact to the millisecond (the events'
  precision); the sum of value x milliseconds is exact, and is expressed in the unit by one division
  by the unit's milliseconds, rounded half-even to 18 decimal places (the only rounding).

Instead of a property, ``field`` reads one of the event's own counters (``input_tokens``,
``output_tokens``, ``tokens`` = their sum, ``bytes``, ``queries``), which every event has; ``models``
keeps the events of those models only. Today's six built-in metrics are metrics of this model with
their own names (``BUILT_IN``), and compute the same totals.

Values are exact decimals (``billing.adapters.clickhouse.metric_queries`` computes them). Invariants
checked at load: ids are unique and none is a built-in metric's name (``queries``, ``tokens`` ...);
``count`` reads nothing, every other aggregation reads exactly one of ``property`` and ``field``
(``time_weighted_sum`` a ``property``, and it alone has a ``per``);
names follow the event property rule; a filter lists at least one value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from billing.catalog.usage_types import BUILT_IN_TYPES
from billing.metering.events import PROPERTY_NAME

Aggregation = Literal["count", "sum", "max", "latest", "unique_count", "time_weighted_sum"]
TimeUnit = Literal["second", "minute", "hour", "day"]
# how many milliseconds (the events' precision) one ``per`` unit of a time-weighted sum holds
MILLISECONDS_PER: dict[str, int] = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
EventField = Literal["input_tokens", "output_tokens", "tokens", "bytes", "queries"]
# The metrics charges have always counted (billing.rating.metrics): their names stay theirs.
BUILT_IN_METRICS = frozenset({"queries", "input_tokens", "output_tokens", "tokens", "bytes", "events"})
_NAME_RULE = "1-64 characters of a-z, 0-9 and _, starting with a letter"


def _check_name(owner: str, what: str, name: str) -> None:
    if PROPERTY_NAME.fullmatch(name) is None:
        raise ValueError(f"{owner}: {what} {name!r} is not a property name ({_NAME_RULE})")


class PropertyFilter(BaseModel):
    """Keeps the events whose text property ``property`` is one of ``in_`` (YAML ``in``), or, with
    ``not_in``, the events that lack it or hold another value. Exactly one of the two."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    property: str
    in_: list[str] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_list(self) -> PropertyFilter:
        _check_name("filter", "property", self.property)
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError(f"filter on {self.property}: give exactly one of `in` and `not_in`")
        return self


class MetricDefinition(BaseModel):
    """One metric of the catalog (see the module's docstring for what each aggregation computes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    name: str = Field(min_length=1, max_length=128)
    unit: str = Field(min_length=1, max_length=64)
    # built-in or declared usage types (``PlanCatalog`` checks each is known)
    event_types: list[str] = Field(min_length=1)
    filters: list[PropertyFilter] = Field(default_factory=list)
    models: list[str] | None = Field(default=None, min_length=1)  # only events of these models
    aggregation: Aggregation
    property: str | None = None
    field: EventField | None = None
    per: TimeUnit | None = None  # the time unit of a time_weighted_sum

    @model_validator(mode="after")
    def _shape(self, info: ValidationInfo) -> MetricDefinition:
        owner = f"metric {self.id}"
        if self.id in BUILT_IN_METRICS and not (info.context or {}).get("built_in"):
            raise ValueError(
                f"{owner}: the id is a built-in metric's ({', '.join(sorted(BUILT_IN_METRICS))})"
            )
        for name in self.event_types:
            _check_name(owner, "event type", name)
        if len(set(self.event_types)) != len(self.event_types):
            raise ValueError(f"{owner}: event_types repeats a type")
        if self.aggregation == "time_weighted_sum":
            if self.property is None or self.field is not None or self.per is None:
                raise ValueError(
                    f"{owner}: a time_weighted_sum reads a numeric `property` (the value held) and "
                    "needs `per` (second, minute, hour or day: the time unit)"
                )
        elif self.per is not None:
            raise ValueError(f"{owner}: `per` is the time unit of a time_weighted_sum only")
        if self.aggregation == "count":
            if self.property is not None or self.field is not None:
                raise ValueError(f"{owner}: a count counts events and reads no property or field")
        elif (self.property is None) == (self.field is None):
            raise ValueError(
                f"{owner}: a {self.aggregation} reads exactly one of `property` (an event property) "
                "and `field` (input_tokens, output_tokens, tokens, bytes or queries)"
            )
        elif self.property is not None:
            _check_name(owner, "property", self.property)
        return self


def check_unique_ids(metrics: list[MetricDefinition]) -> None:
    seen: set[str] = set()
    for metric in metrics:
        if metric.id in seen:
            raise ValueError(f"metric {metric.id}: defined twice")
        seen.add(metric.id)


_ALL_TYPES = list(BUILT_IN_TYPES)
_SUMS = {
    "queries": "Queries",
    "input_tokens": "Input tokens",
    "output_tokens": "Output tokens",
    "tokens": "Tokens",
    "bytes": "Bytes",
}


def _built_in(metric_id: str, name: str, **shape: object) -> MetricDefinition:
    document = {"id": metric_id, "name": name, "unit": name.lower(), "event_types": _ALL_TYPES, **shape}
    return MetricDefinition.model_validate(document, context={"built_in": True})


BUILT_IN: dict[str, MetricDefinition] = {
    **{f: _built_in(f, name, aggregation="sum", field=f) for f, name in _SUMS.items()},
    "events": _built_in("events", "Events", aggregation="count"),
}
"""The six metrics charges count (billing.rating.metrics), as catalog metrics: a charge's
``event_type`` and ``model`` filters are ``event_types`` and ``models`` narrowed to one."""
