"""The peer formats' HTTP glue: OpenMeter, Lago and Segment requests through the one ingest service.

Each route reads its body with its format module (``billing.metering.formats``), hands the events
to ``IngestService.ingest`` with the caller the authorizer named, and answers in that format's
shape, failures included (a refusal, a backing service down: 503, anything else: a 500 that leaks
nothing). Invariant: the caller comes only from the Lambda authorizer's context
(``requestContext.authorizer.apiKeyId``, the id of the API key in the Bearer or Basic credentials);
without it the request is a 401, whatever else it carries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response

from billing.kernel.errors import BillingError, ServiceUnavailable, is_backing_service_failure
from billing.kernel.validation import raw_body
from billing.metering.formats import Answer, Limits, lago, openmeter, segment
from billing.runtime import container
from billing.runtime.ingest_calls import ingest_counted
from billing.runtime.observability import logger
from billing.tenants.access import Principal, principal_for


class _InternalError(BillingError):
    status, code = 500, "internal_error"


def authorizer_key_id(raw_event: Any) -> str | None:
    """The API key id the peer formats' authorizer put in the request's context, or None."""
    context = raw_event.get("requestContext") if isinstance(raw_event, dict) else None
    authorizer = context.get("authorizer") if isinstance(context, dict) else None
    key = authorizer.get("apiKeyId") if isinstance(authorizer, dict) else None
    return key if isinstance(key, str) and key else None


def peer_caller(raw_event: Any) -> Principal:
    return principal_for(authorizer_key_id(raw_event), container.settings().platform_api_key_ids)


def _limits() -> Limits:
    settings = container.settings()
    return Limits(settings.max_body_bytes, settings.max_batch_events, container.plan_catalog().event_types)


def _respond(answer: Answer) -> Response[str]:
    body = "" if answer.body is None else json.dumps(answer.body, default=str)
    return Response(
        status_code=answer.status,
        content_type=answer.content_type if answer.body is not None else None,
        body=body,
        headers=dict(answer.headers),
    )


def _serve(refused: Callable[[BillingError], Answer], work: Callable[[], Answer]) -> Response[str]:
    try:
        return _respond(work())
    except BillingError as error:
        logger.info("request refused", extra={"status": error.status, "code": error.code})
        return _respond(refused(error))
    except Exception as error:
        if is_backing_service_failure(error):
            logger.exception("a backing service failed")
            unavailable = ServiceUnavailable(
                "a backing service is unavailable; retry the request", headers={"Retry-After": "5"}
            )
            return _respond(refused(unavailable))
        logger.exception("unexpected error")
        return _respond(refused(_InternalError("unexpected error; it has been logged")))


def _header(raw_event: dict[str, Any], name: str) -> str | None:
    headers = {k.lower(): v for k, v in (raw_event.get("headers") or {}).items() if isinstance(v, str)}
    return headers.get(name)


def openmeter_events(raw_event: dict[str, Any]) -> Response[str]:
    def work() -> Answer:
        principal = peer_caller(raw_event)
        now = container.ingest_service().clock()
        events = openmeter.events(raw_body(raw_event), _header(raw_event, "content-type"), _limits(), now)
        return openmeter.accepted(ingest_counted(events, principal))

    return _serve(openmeter.refused, work)


def lago_events(raw_event: dict[str, Any], *, batch: bool) -> Response[str]:
    def work() -> Answer:
        principal = peer_caller(raw_event)
        now = container.ingest_service().clock()
        events = lago.events(
            raw_body(raw_event), _header(raw_event, "content-type"), _limits(), now, batch=batch
        )
        return lago.accepted(ingest_counted(events, principal), events, now, batch=batch)

    return _serve(lago.refused, work)


def segment_messages(raw_event: dict[str, Any], *, batch: bool) -> Response[str]:
    def work() -> Answer:
        principal = peer_caller(raw_event)
        now = container.ingest_service().clock()
        events = segment.events(
            raw_body(raw_event),
            _header(raw_event, "content-type"),
            _header(raw_event, "content-encoding"),
            _limits(),
            now,
            tenant_field=container.settings().segment_tenant_field,
            batch=batch,
        )
        return segment.accepted(ingest_counted(events, principal) if events else None)

    return _serve(segment.refused, work)
