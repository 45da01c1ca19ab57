"""What a charge counts: its metric over the events its filters select (event type, model)."""

from __future__ import annotations

from collections.abc import Iterable

from billing.catalog.plans import Charge
from billing.catalog.usage_types import BUILT_IN_TYPES
from billing.rating.usage import Meter

METRIC_UNITS = {
    "queries": "queries",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "tokens": "tokens",
    "bytes": "bytes",
    "events": "events",
}


def metric_value(meter: Meter, metric: str) -> int:
    if metric == "tokens":
        return meter.input_tokens + meter.output_tokens
    value = getattr(meter, metric)
    assert isinstance(value, int)
    return value


def quantity(charge: Charge, meters: Iterable[Meter]) -> int:
    """The charge's units among ``meters``: its metric summed over the events passing its filters.
    Without ``event_type`` a charge reads the built-in types only, so declaring a usage type
    (billing.catalog.usage_types) never changes what an existing charge bills."""
    total = 0
    for meter in meters:
        if charge.event_type is None:
            if meter.type not in BUILT_IN_TYPES:
                continue
        elif meter.type != charge.event_type:
            continue
        if charge.model is not None and meter.model != charge.model:
            continue
        total += metric_value(meter, charge.metric)
    return total


def units(charge: Charge) -> str:
    """Human name of what the charge counts, e.g. "output tokens of gpt-4o", "events of type storage"."""
    name = METRIC_UNITS[charge.metric]
    if charge.event_type is not None:
        name += f" of type {charge.event_type}"
    if charge.model is not None:
        name += f" of {charge.model}"
    return name
