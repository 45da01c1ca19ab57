"""Tenant reads (API key required; a tenant's own key reads only its own tenant):
GET /v1/tenants/{tenant_id}/status: payment standing, invoices in dunning and the audit trail;
GET /v1/tenants/{tenant_id}/quota: the quota gate's read;
GET /v1/events/{event_id}/receipt?tenant_id= and POST /v1/receipts: what became of event ids;
GET /v1/tenants/{tenant_id}/reconcile?month=: accepted, stored and billed counts of a month."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.errors import InvalidRequest
from billing.kernel.periods import Month, parse_month
from billing.runtime import container
from billing.runtime.http import caller, install_error_handlers, json_response, request_body
from billing.runtime.observability import logger, metrics, tracer

app = APIGatewayRestResolver()
install_error_handlers(app)


@app.get("/v1/tenants/<tenant_id>/status")
@tracer.capture_method
def tenant_status(tenant_id: str) -> Response:
    principal = caller(app.current_event)
    view = container.tenant_service().status(tenant_id, principal)
    body = view.to_json()
    credits = container.credit_book().summary(tenant_id, container.clock()())
    if credits["grants"]:  # tenants without prepaid credits keep the body they always had
        body["credits"] = credits
    return json_response(200, body)


@app.get("/v1/tenants/<tenant_id>/quota")
@tracer.capture_method
def tenant_quota(tenant_id: str) -> Response:
    from billing.metering.quota_windows import quota_window
    from billing.metering.quotas import quota_status

    principal = caller(app.current_event)
    now = container.clock()()
    found, used, counters = container.quota_reads().read_counters(tenant_id, str(Month.of(now)))
    window = quota_window(found, now)
    if window.key != str(Month.of(now)):  # a tenant calendar's period: its own counters
        found, used, counters = container.quota_reads().read_counters(tenant_id, window.key)
    tenant = principal.require(tenant_id, found, "read the quota of")
    status = quota_status(tenant, container.plan_catalog(), used, now, counters)
    return json_response(200, status.to_json(), headers={"Cache-Control": "no-store"})


def _allowed(tenant_id: str, action: str) -> None:
    principal = caller(app.current_event)
    principal.require(tenant_id, container.tenants().get(tenant_id), action)


@app.get("/v1/events/<event_id>/receipt")
@tracer.capture_method
def event_receipt(event_id: str) -> Response:
    from billing.kernel.validation import parse_model
    from billing.metering.receipt_views import ReceiptQuery

    caller(app.current_event)  # a 401 before any 400
    query = parse_model(
        ReceiptQuery,
        {"tenant_id": app.current_event.get_query_string_value("tenant_id"), "event_id": event_id},
        what="request",
    )
    _allowed(query.tenant_id, "read the receipts of")
    (receipt,) = container.receipt_service().receipts(query.tenant_id, [query.event_id])
    return json_response(200, receipt.to_json(), headers={"Cache-Control": "no-store"})


@app.post("/v1/receipts")
@tracer.capture_method
def receipts() -> Response:
    from billing.kernel.validation import parse_model
    from billing.metering.receipt_views import ReceiptsRequest

    caller(app.current_event)
    request = parse_model(ReceiptsRequest, request_body(app.current_event))
    _allowed(request.tenant_id, "read the receipts of")
    found = container.receipt_service().receipts(request.tenant_id, list(dict.fromkeys(request.event_ids)))
    return json_response(
        200,
        {"tenant_id": request.tenant_id, "receipts": [r.to_json() for r in found]},
        headers={"Cache-Control": "no-store"},
    )


@app.get("/v1/tenants/<tenant_id>/reconcile")
@tracer.capture_method
def reconcile(tenant_id: str) -> Response:
    caller(app.current_event)
    month = app.current_event.get_query_string_value("month")
    if month is None:
        raise InvalidRequest(
            "the month to reconcile is required (?month=YYYY-MM)",
            details=[{"field": "month", "reason": "missing"}],
        )
    _allowed(tenant_id, "reconcile the usage of")
    result = container.receipt_service().reconcile(tenant_id, parse_month(month))
    return json_response(200, result.to_json(), headers={"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
