"""The void row of a stored row and a row's version as the audit trail shows it
(billing.metering.corrections); a correction's rows are kept as JSON in the format of
``billing.metering.row_json``.

Invariant: a negation has the row's dimensions and every quantity, the cost and each number property
negated."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.metering.events import PropertyValue, StoredEvent
from billing.metering.row_json import property_texts


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
    """A version of the event as the audit trail shows it (under the customer's event id), from its
    row in either format ``billing.metering.row_json.decode_row`` reads."""
    if row is None:
        return None
    properties = property_texts(row)
    keep = ("model", "input_tokens", "output_tokens", "bytes", "cost_usd", "price_version")
    return {**{k: row[k] for k in keep}, "properties": properties}
