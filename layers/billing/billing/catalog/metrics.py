"""Catalog metrics: what a usage measure is, defined in the catalog next to the plans (the ``metrics``
key of the plans file), over the events' type and properties.

A metric reads the events of a tenant in a period (each event once) whose ``type`` is one of its
``event_types`` and whose text properties pass every filter, and aggregates them:

- ``count``: the number of those events;
- ``sum``, ``max``: of the numeric ``property`` over the events carrying it as a number;
- ``latest``: the numeric ``property`` of the last such event (latest ``timestamp``; a tie is broken
  by the greatest ``event_id``, so the value does not depend on arrival order);
- ``unique_count``: the number of distinct values of ``property`` (text or number; the text ``"3"``
  and the number 3 are two values; 3 and 3.0 are one).

Values are exact decimals (``billing.adapters.clickhouse.metric_queries`` computes them). Invariants
checked at load: ids are unique and none is a built-in metric's name (``queries``, ``tokens`` ...);
``count`` takes no ``property``, every other aggregation needs one; names follow the event property
rule; a filter lists at least one value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from billing.metering.events import PROPERTY_NAME

Aggregation = Literal["count", "sum", "max", "latest", "unique_count"]
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
    event_types: list[Literal["query", "embedding", "storage"]] = Field(min_length=1)
    filters: list[PropertyFilter] = Field(default_factory=list)
    aggregation: Aggregation
    property: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> MetricDefinition:
        owner = f"metric {self.id}"
        if self.id in BUILT_IN_METRICS:
            raise ValueError(
                f"{owner}: the id is a built-in metric's ({', '.join(sorted(BUILT_IN_METRICS))})"
            )
        if len(set(self.event_types)) != len(self.event_types):
            raise ValueError(f"{owner}: event_types repeats a type")
        if self.aggregation == "count":
            if self.property is not None:
                raise ValueError(f"{owner}: a count counts events and reads no property")
        elif self.property is None:
            raise ValueError(f"{owner}: a {self.aggregation} needs `property` (the property it reads)")
        else:
            _check_name(owner, "property", self.property)
        return self


def check_unique_ids(metrics: list[MetricDefinition]) -> None:
    seen: set[str] = set()
    for metric in metrics:
        if metric.id in seen:
            raise ValueError(f"metric {metric.id}: defined twice")
        seen.add(metric.id)
