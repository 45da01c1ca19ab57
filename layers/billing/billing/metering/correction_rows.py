"""A correction's rows as JSON (exact: numbers as text) for its plan and the audit trail, and the
void row of a stored row (billing.metering.corrections).

Invariant: ``row_from_json(row_to_json(r))`` is ``r`` (but ``accepted_at``), digit for digit; a
negation has the row's dimensions and every quantity, the cost and each number property negated."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.kernel.periods import iso, parse_instant
from billing.metering.events import PropertyValue, StoredEvent


def row_to_json(row: StoredEvent) -> dict[str, Any]:
    """A stored row as JSON-safe values (exact: numbers as text), for the plan and the audit trail."""
    text, numbers = row.split_properties()
    return {
        "event_id": row.event_id,
        "timestamp": iso(row.timestamp),
        "type": row.type,
        "model": row.model,
        "queries": row.queries,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "bytes": row.bytes,
        "cost_usd": str(row.cost_usd),
        "price_version": row.price_version,
        "properties": {**text, **{k: {"number": str(v)} for k, v in numbers.items()}},
    }


def row_from_json(tenant_id: str, data: dict[str, Any], accepted_at: datetime) -> StoredEvent:
    properties = {
        k: Decimal(v["number"]) if isinstance(v, dict) else str(v) for k, v in data["properties"].items()
    }
    return StoredEvent(
        tenant_id,
        data["event_id"],
        parse_instant(data["timestamp"]),
        data["type"],
        data["model"],
        int(data["queries"]),
        int(data["input_tokens"]),
        int(data["output_tokens"]),
        int(data["bytes"]),
        Decimal(data["cost_usd"]),
        data["price_version"],
        accepted_at,
        properties,
    )


def negation(row: StoredEvent, event_id: str, accepted_at: datetime) -> StoredEvent:
    """The void row of ``row``: same dimensions, every quantity, the cost and each number negated."""
    properties: dict[str, PropertyValue] = {
        k: -v if isinstance(v, Decimal) else v for k, v in row.properties.items()
    }
    return row._replace(
        event_id=event_id,
        queries=-row.queries,
        input_tokens=-row.input_tokens,
        output_tokens=-row.output_tokens,
        bytes=-row.bytes,
        cost_usd=-row.cost_usd,
        accepted_at=accepted_at,
        properties=properties,
    )


def public_version(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A version of the event as the audit trail shows it (under the customer's event id)."""
    if row is None:
        return None
    properties = {k: v["number"] if isinstance(v, dict) else v for k, v in row["properties"].items()}
    keep = ("model", "input_tokens", "output_tokens", "bytes", "cost_usd", "price_version")
    return {**{k: row[k] for k in keep}, "properties": properties}
