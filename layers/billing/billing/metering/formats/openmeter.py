"""OpenMeter's ingest API (CloudEvents 1.0, as the ``openmeter`` SDK and collector send them) on our
events: ``POST {api}/openmeter/api/v1/events``.

Body: one event (``application/cloudevents+json``, or ``application/json``) or a list of them
(``application/cloudevents-batch+json``, or ``application/json``). Mapping: ``id`` -> event id,
``subject`` -> tenant id, ``type`` -> usage type, ``time`` -> timestamp (absent: the time it
arrives, as OpenMeter does), ``data`` -> properties. ``source``, ``specversion`` and the other
CloudEvents attributes are read for their shape only. Answers: 204 without a body on success;
RFC 7807 ``application/problem+json`` otherwise, its ``extensions.validationErrors`` listing each
problem (``field`` the CloudEvents attribute, ``index`` the event's place in the batch).
"""

from __future__ import annotations

from datetime import datetime
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

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PROBLEM = "application/problem+json"
FIELDS = {"event_id": "id", "tenant_id": "subject", "type": "type", "timestamp": "time", "properties": "data"}
for _measure in ("model", "input_tokens", "output_tokens", "bytes"):
    FIELDS[_measure] = f"data.{_measure}"


def events(body: bytes, content_type: str | None, limits: Limits, now: datetime) -> list[UsageEvent]:
    document = read_json(body, content_type, (SINGLE, BATCH, "application/json"), limits)
    media = (content_type or "").split(";")[0].strip().lower()
    if media == BATCH and not isinstance(document, list):
        raise InvalidRequest(
            f"a {BATCH} body is a JSON array of CloudEvents",
            details=[{"field": "body", "reason": "not an array"}],
        )
    if media == SINGLE and not isinstance(document, dict):
        raise InvalidRequest(
            f"a {SINGLE} body is one CloudEvent (a JSON object)",
            details=[{"field": "body", "reason": "not an object"}],
        )
    batch = document if isinstance(document, list) else [document]
    raws: list[Any] = []
    for cloud_event in batch:
        if not isinstance(cloud_event, dict):
            raws.append(cloud_event)  # parse_batch names it: "must be a JSON object"
            continue
        raws.append(
            our_event(
                event_id=cloud_event.get("id"),
                tenant_id=cloud_event.get("subject"),
                event_type=cloud_event.get("type"),
                timestamp=cloud_event["time"] if cloud_event.get("time") is not None else iso(now),
                properties=cloud_event.get("data"),
            )
        )
    if not raws:
        raise InvalidRequest("the batch holds no event", details=[{"field": "body", "reason": "empty array"}])
    return translate(raws, limits, FIELDS, "[{index}]" if isinstance(document, list) else "")


def accepted(result: IngestResult) -> Answer:
    if partly_refused(result):
        return problem(429, quota_message(result), None, {"rejectedForQuota": result.rejected_for_quota})
    return Answer(204, None)


def refused(error: BillingError) -> Answer:
    extensions: dict[str, Any] | None = None
    if isinstance(error.details, list):
        extensions = {"validationErrors": error.details}
    elif isinstance(error.details, dict):
        extensions = {"details": error.details}
    return problem(error.status, error.message, error.headers, extensions, code=error.code)


def problem(
    status: int,
    detail: str,
    headers: dict[str, str] | None,
    extensions: dict[str, Any] | None,
    *,
    code: str = "quota_exceeded",
) -> Answer:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "extensions": {"code": code, **(extensions or {})},
    }
    return Answer(status, body, PROBLEM, headers or {})
