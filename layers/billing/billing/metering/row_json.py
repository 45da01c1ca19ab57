"""A stored row as JSON, the one format the fallback queue's messages (billing.metering.fallback) and
the corrections' plans and event states (billing.metering.corrections) are written in.

A row is an object of every ``StoredEvent`` field but ``properties`` (instants as ISO text, the cost
as the decimal text of its exact value), plus ``string_properties`` and/or ``number_properties``, each
only when not empty (numbers as the decimal text of their exact value).

Invariants: ``decode_row(encode_row(r)) == r``, digit for digit. ``decode_row`` also reads the format
corrections were written in before (no ``tenant_id`` nor ``accepted_at``, one ``properties`` map with
each number as ``{"number": text}``), which DynamoDB still holds for corrections planned then: such a
row is decoded with the ``tenant_id`` and ``accepted_at`` its reader supplies.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.kernel.periods import iso, parse_instant
from billing.metering.events import NO_PROPERTIES, STORED_FIELDS, PropertyValue, StoredEvent

# The keys of every row; a row with properties also has some of PROPERTY_KEYS.
ROW_FIELDS = tuple(name for name in STORED_FIELDS if name != "properties")
PROPERTY_KEYS = ("string_properties", "number_properties")


def encoded_properties(row: StoredEvent) -> dict[str, dict[str, str]]:
    """A row's non-empty property maps as ``encode_row`` writes them."""
    text, numbers = row.split_properties()
    encoded: dict[str, dict[str, str]] = {}
    if text:
        encoded["string_properties"] = text
    if numbers:
        encoded["number_properties"] = {name: str(value) for name, value in numbers.items()}
    return encoded


def encode_row(row: StoredEvent) -> dict[str, Any]:
    return {
        "tenant_id": row.tenant_id,
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
        "accepted_at": iso(row.accepted_at),
        **(encoded_properties(row) if row.properties else {}),
    }


def decode_row(
    data: dict[str, Any], *, tenant_id: str | None = None, accepted_at: datetime | None = None
) -> StoredEvent:
    """The row ``data`` encodes (either format); ``tenant_id`` and ``accepted_at``, when given, are
    the row's instead of those it carries (a correction's rows are accepted at the correction)."""
    return StoredEvent(
        tenant_id=data["tenant_id"] if tenant_id is None else tenant_id,
        event_id=data["event_id"],
        timestamp=parse_instant(data["timestamp"]),
        type=data["type"],
        model=data["model"],
        queries=int(data["queries"]),
        input_tokens=int(data["input_tokens"]),
        output_tokens=int(data["output_tokens"]),
        bytes=int(data["bytes"]),
        cost_usd=Decimal(data["cost_usd"]),
        price_version=data["price_version"],
        accepted_at=parse_instant(data["accepted_at"]) if accepted_at is None else accepted_at,
        properties=_decoded_properties(data),
    )


def property_texts(data: dict[str, Any]) -> dict[str, str]:
    """The properties of an encoded row (either format), numbers as their decimal text, text
    properties first."""
    if "properties" in data:  # the corrections' earlier format
        return {k: v["number"] if isinstance(v, dict) else v for k, v in data["properties"].items()}
    return {**data.get("string_properties", {}), **data.get("number_properties", {})}


def _decoded_properties(data: dict[str, Any]) -> dict[str, PropertyValue]:
    if "properties" in data:  # the corrections' earlier format
        return {
            k: Decimal(v["number"]) if isinstance(v, dict) else str(v) for k, v in data["properties"].items()
        } or NO_PROPERTIES
    text, numbers = data.get("string_properties"), data.get("number_properties")
    if not text and not numbers:
        return NO_PROPERTIES
    return {**(text or {}), **{name: Decimal(value) for name, value in (numbers or {}).items()}}
