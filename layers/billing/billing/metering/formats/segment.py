"""Segment's tracking API (as ``segment-analytics-python`` sends it) on our events:
``POST {api}/segment/v1/batch`` (``{"batch": [...]}``, what the SDK sends) and
``POST {api}/segment/v1/track`` (one track message).

Mapping of a ``track`` message: ``messageId`` -> event id; ``event`` -> usage type; the field
``Settings.segment_tenant_field`` names (``context.groupId`` unless set: Segment's place for the
account a call belongs to; ``userId``, or ``properties.<name>``, which is then not kept as a
property) -> tenant id; ``timestamp`` (absent: the time it arrives) -> timestamp; ``properties`` ->
properties. Other message types (identify, group, page, screen, alias) carry no usage: they are
acknowledged and not stored. A gzip body (``Content-Encoding: gzip``, the SDK's ``gzip=True``) is
inflated within the body size limit. Answers: 200 ``{"success": true}``; otherwise
``{"code", "message", "details"}``, the fields ``analytics-python``'s ``APIError`` reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.kernel.errors import BillingError, InvalidRequest
from billing.kernel.periods import iso
from billing.metering.claims import IngestResult
from billing.metering.events import UsageEvent
from billing.metering.formats import (
    Answer,
    Limits,
    gunzip,
    our_event,
    partly_refused,
    quota_message,
    read_json,
    translate,
)

USAGE_TYPES = frozenset({"track"})


def fields(tenant_field: str) -> dict[str, str]:
    names = {"event_id": "messageId", "tenant_id": tenant_field, "type": "event", "timestamp": "timestamp"}
    names["properties"] = "properties"
    for measure in ("model", "input_tokens", "output_tokens", "bytes"):
        names[measure] = f"properties.{measure}"
    return names


def events(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    limits: Limits,
    now: datetime,
    *,
    tenant_field: str,
    batch: bool,
) -> list[UsageEvent]:
    """The track messages of the body as our events (possibly none: a batch of identify calls)."""
    if (content_encoding or "").strip().lower() == "gzip":
        body = gunzip(body, limits.max_bytes)
    document = read_json(body, content_type, ("application/json",), limits)
    if batch:
        if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
            raise InvalidRequest(
                'body must be an object {"batch": [...]}', details=[{"field": "batch", "reason": "required"}]
            )
        messages = document["batch"]
    else:
        if not isinstance(document, dict):
            raise InvalidRequest(
                "body must be a track message (a JSON object)",
                details=[{"field": "body", "reason": "not an object"}],
            )
        messages = [{"type": "track", **document}]
    raws: list[Any] = []
    positions: list[int] = []  # each track message's place in the batch
    for position, message in enumerate(messages):
        kind = message.get("type") if isinstance(message, dict) else None
        if isinstance(kind, str) and kind not in USAGE_TYPES:
            continue  # identify, page...: acknowledged, no usage in them
        raws.append(_track(message, tenant_field, now) if isinstance(message, dict) else message)
        positions.append(position)
    if not raws:
        return []
    where = "batch[{index}]" if batch else ""
    return translate(raws, limits, fields(tenant_field), where, positions=positions)


def _track(message: dict[str, Any], tenant_field: str, now: datetime) -> dict[str, Any]:
    properties = message.get("properties")
    head, _, rest = tenant_field.partition(".")
    tenant: Any = message
    for part in tenant_field.split("."):
        tenant = tenant.get(part) if isinstance(tenant, dict) else None
    if head == "properties" and rest and isinstance(properties, dict) and "." not in rest:
        properties = {k: v for k, v in properties.items() if k != rest}  # the tenant, not a property
    if properties == {}:
        properties = None
    return our_event(
        event_id=message.get("messageId"),
        tenant_id=tenant,
        event_type=message.get("event"),
        timestamp=message["timestamp"] if message.get("timestamp") is not None else iso(now),
        properties=properties,
    )


def accepted(result: IngestResult | None) -> Answer:
    if result is not None and partly_refused(result):
        return Answer(
            429,
            {
                "code": "quota_exceeded",
                "message": quota_message(result),
                "details": result.rejected_for_quota,
            },
        )
    return Answer(200, {"success": True})


def refused(error: BillingError) -> Answer:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details is not None:
        body["details"] = error.details
    return Answer(error.status, body, "application/json", error.headers)
