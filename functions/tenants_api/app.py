"""Tenants API: signup, plan changes, the billing calendar, cancellation, statements, prepaid credits and coupons
(API Gateway REST, API key). Authorization (platform keys manage tenants; a tenant's own key reads
its statements and credits) is decided by the domain (``billing.tenants.access.Principal``), never here."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.periods import parse_month
from billing.runtime import container
from billing.runtime.http import caller, install_error_handlers, json_response, request_body
from billing.runtime.observability import logger, metrics, tracer

app = APIGatewayRestResolver()
install_error_handlers(app)


@app.post("/v1/tenants")
def signup() -> Response:
    from billing.tenants.requests import SignupRequest, parse_request

    principal = caller(app.current_event)
    tenant, created = container.tenant_service().signup(
        parse_request(SignupRequest, request_body(app.current_event)), principal
    )
    logger.append_keys(tenant_id=tenant.id)
    return json_response(201 if created else 200, tenant.model_dump(mode="json"))


@app.post("/v1/tenants/<tenant_id>/plan")
def change_plan(tenant_id: str) -> Response:
    from billing.tenants.requests import PlanChangeRequest, parse_request

    principal = caller(app.current_event)
    request = parse_request(PlanChangeRequest, request_body(app.current_event))
    tenant = container.tenant_service().change_plan(tenant_id, request, principal)
    return json_response(200, tenant.model_dump(mode="json"))


@app.post("/v1/tenants/<tenant_id>/cancel")
def cancel(tenant_id: str) -> Response:
    from billing.tenants.requests import CancelRequest, parse_request

    principal = caller(app.current_event)
    request = parse_request(CancelRequest, request_body(app.current_event))
    tenant, statement = container.tenant_service().cancel(tenant_id, request, principal)
    return json_response(
        200, {"tenant": tenant.model_dump(mode="json"), "statement": statement.model_dump(mode="json")}
    )


@app.get("/v1/tenants/<tenant_id>/statements/<month>")
def statement(tenant_id: str, month: str) -> Response:
    principal = caller(app.current_event)
    result, stored = container.tenant_service().statement(tenant_id, parse_month(month), principal)
    return json_response(200, {"preview": not stored, "statement": result.model_dump(mode="json")})


@app.post("/v1/tenants/<tenant_id>/billing/setup")
def billing_setup(tenant_id: str) -> Response:
    """A Stripe-hosted page (Checkout, setup mode) where the tenant saves a card for its invoices
    (a platform key, or the tenant's own key)."""
    from billing.payments.card_on_file import SetupRequest
    from billing.tenants.requests import parse_request

    container.tenant_service().get(tenant_id, caller(app.current_event), "ask for the billing pages of")
    request = parse_request(SetupRequest, request_body(app.current_event))
    return json_response(201, container.card_on_file().setup_session(tenant_id, request))


@app.post("/v1/tenants/<tenant_id>/billing/portal")
def payment_settings(tenant_id: str) -> Response:
    """The payment settings page (a Stripe Billing Portal session): update the card, see and pay
    invoices."""
    from billing.payments.card_on_file import PaymentSettingsRequest
    from billing.tenants.requests import parse_request

    container.tenant_service().get(tenant_id, caller(app.current_event), "ask for the billing pages of")
    request = parse_request(PaymentSettingsRequest, request_body(app.current_event))
    return json_response(201, container.card_on_file().payment_settings_session(tenant_id, request))


@app.post("/v1/tenants/<tenant_id>/credits")
def grant_credit(tenant_id: str) -> Response:
    from billing.tenants.requests import CreditGrantRequest, parse_request

    principal = caller(app.current_event)
    request = parse_request(CreditGrantRequest, request_body(app.current_event))
    grant, created = container.tenant_service().grant_credit(tenant_id, request, principal)
    return json_response(201 if created else 200, grant.model_dump(mode="json"))


@app.get("/v1/tenants/<tenant_id>/credits")
def list_credits(tenant_id: str) -> Response:
    grants = container.tenant_service().credits_of(tenant_id, caller(app.current_event))
    return json_response(200, {"tenant_id": tenant_id, "grants": grants})


@app.post("/v1/tenants/<tenant_id>/coupons")
def attach_coupon(tenant_id: str) -> Response:
    from billing.tenants.requests import CouponRequest, parse_request

    principal = caller(app.current_event)
    request = parse_request(CouponRequest, request_body(app.current_event))
    tenant, created = container.tenant_service().attach_coupon(tenant_id, request, principal)
    return json_response(201 if created else 200, tenant.model_dump(mode="json"))


@app.get("/v1/tenants/<tenant_id>/calendar")
def read_calendar(tenant_id: str) -> Response:
    """The billing calendar in force, the current period and any change scheduled."""
    view = container.tenant_service().calendar(tenant_id, caller(app.current_event))
    return json_response(200, view.model_dump(mode="json"))


@app.post("/v1/tenants/<tenant_id>/calendar")
def change_calendar(tenant_id: str) -> Response:
    """Change the time zone, anchor or interval from the next period boundary."""
    from billing.tenants.requests import CalendarRequest, parse_request

    principal = caller(app.current_event)
    request = parse_request(CalendarRequest, request_body(app.current_event))
    view = container.tenant_service().change_calendar(tenant_id, request, principal)
    return json_response(200, view.model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
