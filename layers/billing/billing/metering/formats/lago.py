"""Lago's event API (as ``lago-python-client`` sends it) on our events:
``POST {api}/lago/api/v1/events`` (``{"event": {...}}``) and ``POST {api}/lago/api/v1/events/batch``
(``{"events": [...]}``).

Mapping: ``transaction_id`` -> event id; ``external_customer_id`` when given, else
``external_subscription_id`` -> tenant id; ``code`` -> usage type; ``timestamp`` (Unix seconds, an
integer, a fraction or their text; absent: the time it arrives, as Lago does) -> timestamp;
``properties`` -> properties. ``precise_total_amount_cents`` (a price sent with the event) is
refused: events are priced from the catalog at event time. Answers: 200 with the event(s) as Lago
returns them; otherwise Lago's error body ``{"status", "error", "code", "error_details"}``, invalid
events a 422 ``validation_errors`` whose details name Lago's fields (per batch index in a batch).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any

from billing.kernel.errors import BillingError, InvalidRequest
from billing.kernel.periods import iso
from billing.metering.claims import IngestResult
from billing.metering.events import UsageEvent
from billing.metering.formats import (
    Answer,
    Limits,
    our_event,
    partly_refused,
    quota_message,
    read_json,
    translate,
)

FIELDS = {
    "event_id": "transaction_id",
    "tenant_id": "external_subscription_id",
    "type": "code",
    "timestamp": "timestamp",
    "properties": "properties",
}
for _measure in ("model", "input_tokens", "output_tokens", "bytes"):
    FIELDS[_measure] = f"properties.{_measure}"
# Unix seconds of the earliest and latest instants we read (years 1970-9999): anything else is refused
# before it reaches datetime (which raises OverflowError on far values).
_LAST_SECOND = Decimal(253402300799)


def events(
    body: bytes, content_type: str | None, limits: Limits, now: datetime, *, batch: bool
) -> list[UsageEvent]:
    document = read_json(body, content_type, ("application/json",), limits)
    key = "events" if batch else "event"
    if not isinstance(document, dict) or key not in document:
        shape = '{"events": [...]}' if batch else '{"event": {...}}'
        raise InvalidRequest(
            f"body must be an object {shape}", details=[{"field": key, "reason": "required"}]
        )
    items = document[key]
    if batch and (not isinstance(items, list) or not items):
        raise InvalidRequest(
            "'events' must be a non-empty array", details=[{"field": "events", "reason": "required"}]
        )
    raws: list[Any] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items if batch else [items]):
        if not isinstance(item, dict):
            raws.append(item)
            continue
        if item.get("precise_total_amount_cents") is not None:
            problems.append(
                {
                    "index": index,
                    "field": "precise_total_amount_cents",
                    "reason": "events are priced from the catalog at event time; send no amount",
                }
            )
        try:
            stamp = _timestamp(item.get("timestamp"), now)
        except ValueError as exc:
            problems.append({"index": index, "field": "timestamp", "reason": str(exc)})
            stamp = iso(now)
        customer = item.get("external_customer_id")
        raws.append(
            our_event(
                event_id=item.get("transaction_id"),
                tenant_id=customer if customer is not None else item.get("external_subscription_id"),
                event_type=item.get("code"),
                timestamp=stamp,
                properties=item.get("properties"),
            )
        )
    where = "events[{index}]" if batch else "event"
    return translate(raws, limits, FIELDS, where, problems=problems)


def _timestamp(value: Any, now: datetime) -> str:
    """Lago's timestamp (Unix seconds: int, fraction or their text) as RFC 3339; None: ``now``."""
    if value is None:
        return iso(now)
    if type(value) is bool or not isinstance(value, int | Decimal | str):
        raise ValueError("must be Unix seconds (a number, or its text)")
    try:
        seconds = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError("must be Unix seconds (a number, or its text)") from None
    if not seconds.is_finite() or not 0 <= seconds <= _LAST_SECOND:
        raise ValueError("must be Unix seconds between 1970 and 9999")
    whole = int(seconds)
    micros = int((seconds - whole) * 1_000_000)
    return iso(datetime.fromtimestamp(whole, UTC).replace(microsecond=micros))


def _echo(event: UsageEvent, created_at: datetime) -> dict[str, Any]:
    """An event as Lago's API returns it (``EventResponse``)."""
    return {
        "lago_id": None,
        "transaction_id": event.event_id,
        "lago_customer_id": None,
        "lago_subscription_id": None,
        "external_customer_id": event.tenant_id,
        "external_subscription_id": event.tenant_id,
        "code": event.type,
        "timestamp": iso(event.timestamp),
        "precise_total_amount_cents": None,
        "properties": {k: str(v) if isinstance(v, Decimal) else v for k, v in event.properties.items()},
        "created_at": iso(created_at),
    }


def accepted(result: IngestResult, events: list[UsageEvent], now: datetime, *, batch: bool) -> Answer:
    if partly_refused(result):
        return _error(
            429, "too_many_requests", quota_message(result), {"rejected_for_quota": result.rejected_for_quota}
        )
    echoed = [_echo(e, now) for e in events]
    return Answer(200, {"events": echoed} if batch else {"event": echoed[0]})


def refused(error: BillingError) -> Answer:
    if isinstance(error, InvalidRequest) and isinstance(error.details, list):
        by_field: dict[str, list[str]] = {}
        for problem in error.details:
            if isinstance(problem, dict):
                by_field.setdefault(str(problem.get("field")), []).append(str(problem.get("reason")))
        return _error(422, "validation_errors", error.message, by_field, error.headers)
    details = (
        error.details
        if isinstance(error.details, dict)
        else {"problems": error.details}
        if error.details
        else None
    )
    return _error(error.status, error.code, error.message, details, error.headers)


def _error(
    status: int, code: str, message: str, details: Any, headers: dict[str, str] | None = None
) -> Answer:
    body: dict[str, Any] = {
        "status": status,
        "error": HTTPStatus(status).phrase,
        "code": code,
        "message": message,
    }
    if details:
        body["error_details"] = details
    return Answer(status, body, "application/json", headers or {})
